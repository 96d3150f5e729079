#include "supervisor/model_gate.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

namespace bulkhead {
namespace {

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

bool has(const std::vector<std::string>& modes, const std::string& mode) {
  return std::find(modes.begin(), modes.end(), mode) != modes.end();
}

}  // namespace

std::vector<std::string> granted_modes(const std::map<std::string, std::vector<std::string>>& model_access,
                                       const std::string& name) {
  std::set<std::string> modes;
  for (const auto& [pattern, granted] : model_access)
    if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) modes.insert(granted.begin(), granted.end());
  return {modes.begin(), modes.end()};
}

ModelGate::ModelGate(std::string plugin, std::map<std::string, std::vector<std::string>> model_access,
                     ModelGateLimits limits)
    : plugin_(std::move(plugin)), model_access_(std::move(model_access)), limits_(limits) {}

void ModelGate::describe(const std::vector<ModelParameter>& parameters) {
  std::vector<ModelParameter> granted;
  for (auto parameter : parameters) {
    parameter.access = granted_modes(model_access_, parameter.name);
    if (!parameter.access.empty()) granted.push_back(std::move(parameter));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  parameters_ = std::move(granted);
}

std::vector<ModelParameter> ModelGate::parameters() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return parameters_;
}

void ModelGate::set_trainable(const std::string& parameter, std::optional<std::vector<std::int64_t>> rows) {
  std::lock_guard<std::mutex> lock(mutex_);
  trainable_[parameter] = std::move(rows);
}

void ModelGate::set_step(std::int64_t global_step) {
  std::lock_guard<std::mutex> lock(mutex_);
  step_ = global_step;
}

// Inline bytes, or bytes of the slot lent with the request: copied either way, before any check.
std::string ModelGate::copy_values(const Json& tensor, std::optional<int> lent_slot, std::vector<std::uint8_t>& bytes) const {
  if (tensor.contains("data")) {
    if (!tensor.at("data").is_binary()) return "the update's tensor data is not a MessagePack bin";
    bytes = tensor.at("data").get_binary();
    return "";
  }
  const Json& slot = tensor.at("slot");
  const int index = slot.at("index");
  if (!region_) return "the update points into a shared region, and the plugin has none";
  if (!lent_slot || index != *lent_slot)
    return "the update points into slot " + std::to_string(index) + ", not the slot lent with this request" +
           (lent_slot ? " (" + std::to_string(*lent_slot) + ")" : " (none)");
  const std::string why = region_->copy_out(index, slot.at("offset"), slot.at("bytes"), bytes);
  return why.empty() ? "" : "the update's slot: " + why;
}

// Called with mutex_ held. The values are copied out of the message (or the region) first: what
// is checked is what is applied, whatever the sender does with its buffer afterwards.
std::string ModelGate::check(const Json& update, std::optional<int> lent_slot, ModelUpdate& out) const {
  out.plugin = plugin_;
  out.parameter = update.at("parameter").get<std::string>();
  out.rows = update.at("rows").get<std::vector<std::int64_t>>();
  out.add = update.at("mode") == "add";
  out.based_on_step = update.at("based_on_step").get<std::int64_t>();
  const Json& tensor = update.at("tensor");
  const std::string what = "update of " + out.parameter;
  std::vector<std::uint8_t> bytes;
  if (const std::string why = copy_values(tensor, lent_slot, bytes); !why.empty()) return what + ": " + why;
  out.values.resize(bytes.size() / sizeof(float));
  std::memcpy(out.values.data(), bytes.data(), out.values.size() * sizeof(float));

  const ModelParameter* parameter = find(out.parameter);
  if (!parameter || !has(parameter->access, "write"))
    return what + ": the plugin has no write grant on " + out.parameter;
  std::vector<std::int64_t> expected = parameter->shape;
  expected[0] = static_cast<std::int64_t>(out.rows.size());
  const auto shape = tensor.at("shape").get<std::vector<std::int64_t>>();
  if (shape != expected)
    return what + ": the tensor's shape is " + shape_text(shape) + ", not " + shape_text(expected) + " (" +
           std::to_string(out.rows.size()) + " rows of " + shape_text(parameter->shape) + ")";
  std::int64_t row_size = 1;
  for (std::size_t i = 1; i < expected.size(); ++i) row_size *= expected[i];
  if (bytes.size() != std::size_t(row_size) * out.rows.size() * sizeof(float))
    return what + ": the tensor holds " + std::to_string(bytes.size()) + " bytes, not the " +
           std::to_string(row_size * std::int64_t(out.rows.size()) * 4) + " its shape needs";
  const auto trainable = trainable_.find(out.parameter);
  for (auto row : out.rows) {
    if (row >= parameter->shape[0])
      return what + ": row " + std::to_string(row) + " is outside the parameter's " + std::to_string(parameter->shape[0]) + " rows";
    const bool writable = trainable != trainable_.end() &&
                          (!trainable->second || std::count(trainable->second->begin(), trainable->second->end(), row));
    if (!writable) return what + ": row " + std::to_string(row) + " is frozen (not trainable), so it cannot be written";
  }
  for (std::size_t r = 0; r < out.rows.size(); ++r) {
    double norm = 0;
    for (std::int64_t c = 0; c < row_size; ++c) {
      const float value = out.values[r * row_size + c];
      if (!std::isfinite(value))
        return what + ": row " + std::to_string(out.rows[r]) + " holds " + (std::isnan(value) ? "NaN" : "infinity");
      norm += double(value) * value;
    }
    if (std::sqrt(norm) > limits_.max_update_norm)
      return what + ": row " + std::to_string(out.rows[r]) + " has norm " + std::to_string(std::sqrt(norm)) +
             ", over limits.max_update_norm " + std::to_string(limits_.max_update_norm);
  }
  if (out.based_on_step > step_)
    return what + ": based on step " + std::to_string(out.based_on_step) + ", which has not happened (now " +
           std::to_string(step_) + ")";
  if (step_ - out.based_on_step > limits_.max_update_staleness_steps)
    return what + ": based on step " + std::to_string(out.based_on_step) + ", " + std::to_string(step_ - out.based_on_step) +
           " steps old (limits.max_update_staleness_steps " + std::to_string(limits_.max_update_staleness_steps) + ")";
  return "";
}

void ModelGate::set_vocabulary(std::vector<std::string> tokens, std::string embedding,
                               std::function<bool(const std::string&)> is_word) {
  std::lock_guard<std::mutex> lock(mutex_);
  tokens_ = std::move(tokens);
  embedding_ = std::move(embedding);
  is_word_ = std::move(is_word);
}

const ModelParameter* ModelGate::find(const std::string& name) const {
  for (const auto& parameter : parameters_)
    if (parameter.name == name) return &parameter;
  return nullptr;
}

std::string ModelGate::check_load_reply(const Json& result) const {
  if (!result.is_object()) return "";
  std::lock_guard<std::mutex> lock(mutex_);
  const ModelParameter* embedding = find(embedding_);
  const bool embedding_writable = embedding && has(embedding->access, "write");
  std::vector<std::string> tokens = tokens_;  // with the ones this reply adds, in order
  const Json add_tokens = result.value("add_tokens", Json::array()), trainable = result.value("trainable", Json::object());
  for (const auto& added : add_tokens) {
    const std::string token = added.at("token"), init = added.at("init_from");
    if (!embedding_writable) return "add_tokens needs a write grant on " + embedding_ + ", which the plugin lacks";
    if (is_word_ && !is_word_(token))
      return "add_tokens: \"" + token + "\" is not one word as captions are split (lower case, letters and digits)";
    if (std::find(tokens.begin(), tokens.end(), init) == tokens.end())
      return "add_tokens: \"" + token + "\" is to start from \"" + init + "\", which is not in the vocabulary";
    if (std::find(tokens.begin(), tokens.end(), token) == tokens.end()) tokens.push_back(token);
  }
  for (const auto& [name, rows] : trainable.items()) {
    const ModelParameter* parameter = find(name);
    if (!parameter || !has(parameter->access, "write"))
      return "trainable names " + name + ", on which the plugin has no write grant";
    const std::int64_t count = name == embedding_ ? std::int64_t(tokens.size()) : parameter->shape[0];
    for (const auto& row : rows) {
      if (row.is_string() && (name != embedding_ || std::find(tokens.begin(), tokens.end(), row) == tokens.end()))
        return "trainable: " + row.dump() + " is not a token of " + name;
      if (row.is_number() && (row.get<std::int64_t>() < 0 || row.get<std::int64_t>() >= count))
        return "trainable: row " + row.dump() + " is outside " + name + "'s " + std::to_string(count) + " rows";
    }
  }
  // freeze_rest freezes all but the rows this reply names: with none named, nothing would train
  // and the optimizer's first step would end the run, so the reply is refused instead.
  const bool names_a_row = std::any_of(trainable.begin(), trainable.end(), [](const Json& rows) { return !rows.empty(); });
  if (result.value("freeze_rest", false) && !names_a_row)
    return "freeze_rest with no trainable rows would leave nothing to train";
  if (result.value("freeze_rest", false) && !std::any_of(parameters_.begin(), parameters_.end(), [](const ModelParameter& p) {
        return has(p.access, "write");
      }))
    return "freeze_rest needs a write grant on some parameter, which the plugin lacks";
  return "";
}

void ModelGate::count_without_tensors() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++without_tensors_;
}

std::string ModelGate::admit(const Json& updates, std::optional<int> lent_slot) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<ModelUpdate> checked(updates.size());
  for (std::size_t i = 0; i < updates.size(); ++i) {
    const std::string why = check(updates[i], lent_slot, checked[i]);
    if (!why.empty()) {
      ++refused_;
      return updates.size() > 1 ? why + " (update " + std::to_string(i + 1) + " of " + std::to_string(updates.size()) +
                                      "; none applied)"
                                : why;
    }
  }
  admitted_ += long(checked.size());
  for (auto& update : checked) queued_.push_back(std::move(update));
  return "";
}

std::vector<ModelUpdate> ModelGate::take() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(queued_, {});
}

Json ModelGate::counters() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {{"updates_admitted", admitted_}, {"replies_refused", refused_}, {"sent_without_tensors", without_tensors_}};
}

}  // namespace bulkhead
