#include "train/model_access.hpp"

#include <chrono>
#include <cstring>

#include <fmt/ranges.h>

#include "common/atomic_file.hpp"
#include "common/log.hpp"
#include "common/schemas.hpp"
#include "train/config.hpp"

namespace bulkhead {
namespace fs = std::filesystem;

namespace {

Json tensor_json(const torch::Tensor& rows) {
  const torch::Tensor cpu = rows.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(cpu.data_ptr<float>());
  return {{"dtype", "float32"}, {"shape", cpu.sizes().vec()}, {"data", Json::binary({bytes, bytes + cpu.nbytes()})}};
}

std::vector<std::int64_t> all_rows(std::int64_t count) {
  std::vector<std::int64_t> rows(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) rows[static_cast<std::size_t>(i)] = i;
  return rows;
}

}  // namespace

ModelAccess::ModelAccess(FlowModel& model, Vocabulary& vocab, PluginRunner& plugins)
    : model_(model), vocab_(vocab), plugins_(plugins), log_(logger("model")), gates_(plugins.model_gates()) {
  refuse_ungranted_model_hooks();
}

// An entry without a manifest (a class path: an EveryDream2 textual_inversion.py) that implements a
// model hook without a grant would train without what it is for, teaching nothing: the run does not
// start, and says which grant to add. A manifest that asks for model_access without the grant was
// refused earlier; one that does not ask is its author's choice (the supervisor warns).
void ModelAccess::refuse_ungranted_model_hooks() const {
  std::set<std::string> granted;
  for (const auto& [plugin, gate] : gates_) granted.insert(plugin);
  for (const auto& plugin : plugins_.names()) {
    if (granted.count(plugin) || plugins_.has_manifest(plugin) || !plugins_.welcomed(plugin)) continue;
    for (const auto& [hook, spec] : Schemas::instance().hook_catalogue()["hooks"].items())
      if (spec.value("model_access", false) && plugins_.implements(plugin, hook))
        throw ConfigError("plugin '" + plugin + "' implements " + hook + ", which needs model access: add \"grant\": " +
                          "{\"model_access\": {\"" + FlowModelImpl::kWordEmbedding + "\": [\"read\", \"write\"]}} to its " +
                          "entry in train.json (docs/protocol.md, section 9)");
  }
}

torch::Tensor ModelAccess::parameter(const std::string& name) const {
  const auto parameters = model_->named_parameters();
  const auto* found = parameters.find(name);
  if (found == nullptr) throw std::logic_error("the model has no parameter " + name);
  return *found;
}

// Each gate learns the model as it is now: a plugin sees the tokens the ones before it added.
void ModelAccess::prepare_gates(std::int64_t global_step) {
  std::vector<ModelParameter> parameters;
  for (const auto& item : model_->named_parameters()) parameters.push_back({item.key(), item.value().sizes().vec(), {}});
  const auto is_word = [](const std::string& token) {
    const auto words = Vocabulary::split_words(token);
    return words.size() == 1 && words[0] == token;
  };
  for (auto& [plugin, gate] : gates_) {
    gate->describe(parameters);
    gate->set_vocabulary(vocab_.tokens(), FlowModelImpl::kWordEmbedding, is_word);
    gate->set_step(global_step);
  }
}

void ModelAccess::load(bool resumed, std::int64_t global_step) {
  for (auto& [plugin, gate] : gates_) {
    prepare_gates(global_step);
    if (!plugins_.implements(plugin, "on_model_load")) continue;
    Json parameters = Json::array();
    for (const auto& p : gate->parameters())
      parameters.push_back({{"name", p.name}, {"shape", p.shape}, {"dtype", "float32"}, {"access", p.access}});
    const Json kwargs = {{"parameters", parameters},
                         {"vocabulary", vocab_.tokens()},
                         {"embedding", FlowModelImpl::kWordEmbedding},
                         {"caption_encoder", {{"layers", FlowModelImpl::kCaptionLayers},
                                              {"max_tokens", model_->options().max_tokens}}},
                         {"tensors", tensors_for(plugin, *gate, false)},
                         {"global_step", global_step},
                         {"resumed", resumed}};
    // A failed or refused reply (counted as the plugin's fault) leaves the model as it is.
    if (auto reply = plugins_.call_plugin(plugin, "on_model_load", kwargs); reply && reply->is_object())
      apply_load_reply(plugin, *reply);
  }
  prepare_gates(global_step);
  freeze();
}

void ModelAccess::apply_load_reply(const std::string& plugin, const Json& reply) {
  const Json add_tokens = reply.value("add_tokens", Json::array()), trainable = reply.value("trainable", Json::object());
  for (const auto& added : add_tokens) {
    const std::string token = added.at("token"), init = added.at("init_from");
    if (vocab_.id(token)) {  // a resumed run has it already, trained: it is never reset
      log_->info("{}: token \"{}\" is in the vocabulary already (id {})", plugin, token, *vocab_.id(token));
      continue;
    }
    const std::int64_t from = *vocab_.id(init);
    model_->add_words({from});
    ++added_rows_;
    log_->info("{}: added token \"{}\" (id {}), its embedding starting as \"{}\"'s", plugin, token, vocab_.add(token), init);
  }
  for (const auto& [name, rows] : trainable.items()) {
    auto& mine = reads_[plugin][name];
    for (const auto& row : rows) {
      const std::int64_t id = row.is_string() ? *vocab_.id(row.get<std::string>()) : row.get<std::int64_t>();
      mine.push_back(id);
      trainable_[name].insert(id);
    }
  }
  if (reply.value("freeze_rest", false)) {
    freeze_rest_ = true;
    log_->info("{}: everything but its trainable rows is frozen", plugin);
  }
}

// Frozen parameters get no gradient, so AdamW leaves them alone; a parameter of which only some
// rows train keeps a copy of the others to restore after each step.
void ModelAccess::freeze() {
  for (auto& [plugin, gate] : gates_)
    for (const auto& p : gate->parameters()) {
      if (!freeze_rest_) gate->set_trainable(p.name, std::nullopt);
      else if (trainable_.count(p.name)) gate->set_trainable(p.name, std::vector<std::int64_t>(trainable_[p.name].begin(), trainable_[p.name].end()));
    }
  if (!freeze_rest_) return;
  std::int64_t training = 0;
  for (auto& item : model_->named_parameters()) {
    torch::Tensor p = item.value();
    const auto rows = trainable_.find(item.key());
    if (rows == trainable_.end()) {
      p.set_requires_grad(false);
      continue;
    }
    std::vector<std::int64_t> frozen;
    for (std::int64_t row = 0; row < p.size(0); ++row)
      if (!rows->second.count(row)) frozen.push_back(row);
    training += (p.size(0) - std::int64_t(frozen.size())) * (p.numel() / std::max<std::int64_t>(1, p.size(0)));
    if (frozen.empty()) continue;
    const auto index = torch::tensor(frozen, torch::kLong).to(p.device());
    frozen_.push_back({p, index, p.detach().index_select(0, index).clone()});
  }
  log_->info("model access: {} values train, everything else is frozen", training);
}

namespace {

// Adds the scope's wall time to a total.
class Stopwatch {
 public:
  explicit Stopwatch(double& total) : total_(total) {}
  ~Stopwatch() { total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  double& total_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace

void ModelAccess::before_step() {
  Stopwatch stopwatch(step_seconds_);
  for (auto& rows : frozen_)
    if (rows.parameter.grad().defined()) rows.parameter.grad().index_fill_(0, rows.index, 0);
}

void ModelAccess::after_step(std::int64_t global_step) {
  if (gates_.empty()) return;
  Stopwatch stopwatch(step_seconds_);
  {
    torch::NoGradGuard no_grad;
    for (auto& rows : frozen_) rows.parameter.index_copy_(0, rows.index, rows.values);
    for (auto& [plugin, gate] : gates_)
      for (const auto& update : gate->take()) apply(update);
  }
  for (auto& [plugin, gate] : gates_) {
    gate->set_step(global_step);
    if (plugins_.implements(plugin, "on_model_step"))
      plugins_.notify_plugin(plugin, "on_model_step",
                             {{"global_step", global_step}, {"tensors", tensors_for(plugin, *gate, true)}});
  }
}

// Admitted by the gate: granted, trainable rows, the right shape, finite, within the norm bound, fresh.
void ModelAccess::apply(const ModelUpdate& update) {
  torch::Tensor p = parameter(update.parameter);
  std::vector<std::int64_t> shape = p.sizes().vec();
  shape[0] = static_cast<std::int64_t>(update.rows.size());
  const auto values = torch::from_blob(const_cast<float*>(update.values.data()), shape, torch::kFloat32).to(p.device(), p.dtype());
  const auto rows = torch::tensor(update.rows, torch::kLong).to(p.device());
  if (update.add) p.index_add_(0, rows, values);
  else p.index_copy_(0, rows, values);
  log_->info("{}: {} {} row(s) of {} (based on step {})", update.plugin, update.add ? "added to" : "replaced",
             update.rows.size(), update.parameter, update.based_on_step);
}

// The rows a plugin reads: those it said train, or the whole parameter.
Json ModelAccess::tensors_for(const std::string& plugin, ModelGate& gate, bool lend) const {
  std::vector<std::pair<Json, torch::Tensor>> read;  // {parameter, rows}, their values on the CPU
  std::size_t bytes = 0;
  for (const auto& granted : gate.parameters()) {
    if (std::find(granted.access.begin(), granted.access.end(), "read") == granted.access.end()) continue;
    const torch::Tensor p = parameter(granted.name);
    std::vector<std::int64_t> rows = all_rows(p.size(0));
    if (auto mine = reads_.find(plugin); mine != reads_.end() && mine->second.count(granted.name)) rows = mine->second.at(granted.name);
    const auto index = torch::tensor(rows, torch::kLong).to(p.device());
    const torch::Tensor values = p.detach().index_select(0, index).to(torch::kCPU, torch::kFloat32).contiguous();
    bytes += values.nbytes();
    read.emplace_back(Json{{"parameter", granted.name}, {"rows", rows}}, values);
  }
  const auto& region = gate.region();
  std::optional<int> slot;
  if (lend && region && !read.empty() && bytes <= region->slot_bytes()) {
    slot = region->lend();
    if (!slot) {  // every slot is out: this request goes without tensors, and that is counted
      gate.count_without_tensors();
      return Json::array();
    }
  }
  Json tensors = Json::array();
  std::size_t offset = 0;
  for (auto& [tensor, values] : read) {
    if (!slot) {
      tensor["tensor"] = tensor_json(values);
    } else {
      std::memcpy(region->slot_data(*slot) + offset, values.data_ptr<float>(), values.nbytes());
      tensor["tensor"] = {{"dtype", "float32"},
                          {"shape", values.sizes().vec()},
                          {"slot", {{"index", *slot}, {"offset", offset}, {"bytes", values.nbytes()}}}};
      offset += values.nbytes();
    }
    tensors.push_back(std::move(tensor));
  }
  return tensors;
}

void ModelAccess::saved(const fs::path& checkpoint, const std::string& reason, std::int64_t global_step) {
  for (auto& [plugin, gate] : gates_) {
    if (!plugins_.implements(plugin, "on_model_save")) continue;
    const Json kwargs = {{"path", checkpoint.string()},
                         {"reason", reason},
                         {"global_step", global_step},
                         {"tensors", tensors_for(plugin, *gate, true)}};
    const auto reply = plugins_.call_plugin(plugin, "on_model_save", kwargs);
    if (!reply || !reply->is_object() || !reply->contains("files")) continue;
    // Names are schema-checked (no "..", no absolute path): they land under the plugin's own folder.
    const fs::path folder = fs::path(checkpoint.string() + ".files") / plugin;
    for (const auto& file : (*reply)["files"]) {
      const auto& data = file.at("data").get_binary();
      const fs::path path = folder / file.at("name").get<std::string>();
      fs::create_directories(path.parent_path());
      write_file_atomically(path, std::string(data.begin(), data.end()));
      log_->info("{}: wrote {}", plugin, path.string());
    }
  }
}

}  // namespace bulkhead
