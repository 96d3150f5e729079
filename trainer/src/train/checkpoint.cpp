#include "train/checkpoint.hpp"

#include <algorithm>
#include <fstream>
#include <optional>

#include <bulkhead/wire.hpp>

#include "common/atomic_file.hpp"
#include "common/log.hpp"

namespace bulkhead {
namespace fs = std::filesystem;

nlohmann::json position_to_json(const TrainPosition& p) {
  return {{"epoch", p.epoch},
          {"batches_done", p.batches_done},
          {"global_step", p.global_step},
          {"optimizer_steps", p.optimizer_steps},
          {"grad_accum", p.grad_accum},
          {"next_grad_accum", p.next_grad_accum}};
}

TrainPosition position_from_json(const nlohmann::json& j) {
  TrainPosition p;
  p.epoch = j.at("epoch");
  p.batches_done = j.at("batches_done");
  p.global_step = j.at("global_step");
  p.optimizer_steps = j.at("optimizer_steps");
  p.grad_accum = j.at("grad_accum");
  p.next_grad_accum = j.at("next_grad_accum");
  return p;
}

namespace {

nlohmann::json to_json(const CheckpointInfo& info) {
  nlohmann::json j = position_to_json(info.position);
  j.update({{"format", "bulkhead-checkpoint-1"},
            {"reason", info.reason},
            {"tag", info.tag},
            {"config", info.config},
            {"vocabulary", info.vocab.to_json()},
            {"requested_checkpoints", info.requested_checkpoints}});
  return j;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

CheckpointInfo from_json(const nlohmann::json& j) {
  CheckpointInfo info;
  info.position = position_from_json(j);
  info.reason = j.at("reason");
  info.tag = j.at("tag");
  info.config = j.at("config");
  info.vocab = Vocabulary::from_json(j.at("vocabulary"));
  info.requested_checkpoints = j.value("requested_checkpoints", nlohmann::json::array());
  return info;
}

}  // namespace

FlowModelOptions model_options(const nlohmann::json& config, std::int64_t vocab_size) {
  FlowModelOptions o;
  o.resolution = config.at("resolution");
  o.max_tokens = config.at("max_tokens");
  const auto& m = config.at("model");
  o.channels = m.at("channels");
  o.channel_mults = m.at("channel_mults").get<std::vector<int>>();
  o.blocks_per_level = m.at("blocks_per_level");
  o.embed_dim = m.at("embed_dim");
  o.vocab_size = vocab_size;
  return o;
}

void save_checkpoint(const fs::path& path, FlowModel& model, torch::optim::Optimizer* optimizer,
                     const at::Generator& rng, const CheckpointInfo& info) {
  torch::serialize::OutputArchive archive;
  archive.write("info", c10::IValue(to_json(info).dump()));
  torch::serialize::OutputArchive weights;
  model->save(weights);
  archive.write("model", weights);
  if (optimizer) {
    torch::serialize::OutputArchive state;
    optimizer->save(state);
    archive.write("optimizer", state);
  }
  archive.write("rng", rng.get_state());
  // MessagePack, as the plugins sent them: a state may hold bytes, which JSON text cannot.
  archive.write("plugin_states", c10::IValue(wire::encode_value(info.plugin_states)));
  AtomicFile file(path);
  archive.save_to([&](const void* data, std::size_t size) { return file.write(data, size); });
  file.commit();
  write_file_atomically(path.parent_path() / "latest.txt", path.filename().string() + "\n");
}

namespace {

// Newest first.
std::vector<fs::path> checkpoint_files(const fs::path& folder) {
  std::vector<fs::path> files;
  if (fs::is_directory(folder))
    for (auto& entry : fs::directory_iterator(folder))
      if (entry.is_regular_file() && entry.path().extension() == ".pt") files.push_back(entry.path());
  std::sort(files.begin(), files.end(),
            [](const fs::path& a, const fs::path& b) { return fs::last_write_time(a) > fs::last_write_time(b); });
  return files;
}

// latest.txt is stale (it names a deleted file) or gone: the newest checkpoint that reads back.
std::optional<fs::path> newest_intact(const fs::path& folder, const std::string& why) {
  for (auto& candidate : checkpoint_files(folder)) {
    try {
      (void)Checkpoint(candidate);
    } catch (const std::exception& e) {
      logger("trainer")->warn("{}", e.what());
      continue;
    }
    logger("trainer")->warn("{}; using the newest intact checkpoint, {}", why, candidate.string());
    return candidate;
  }
  return std::nullopt;
}

}  // namespace

fs::path resolve_checkpoint_path(const fs::path& given) {
  if (!fs::is_directory(given)) {
    if (!fs::exists(given)) throw std::runtime_error("no checkpoint at " + given.string());
    return given;
  }
  const fs::path folder = fs::is_directory(given / "checkpoints") ? given / "checkpoints" : given;
  std::ifstream latest(folder / "latest.txt");
  std::string name;
  if (latest && std::getline(latest, name) && fs::is_regular_file(folder / name)) return folder / name;
  const std::string why = latest ? (folder / "latest.txt").string() + " names " + name + ", which is missing"
                                 : "there is no " + (folder / "latest.txt").string();
  if (auto found = newest_intact(folder, why)) return *found;
  throw std::runtime_error(given.string() + " holds no checkpoint (" + why + ", and no readable .pt file)");
}

Checkpoint::Checkpoint(const fs::path& path, const torch::Device& device) : path_(path), device_(device) {
  try {
    archive_.load_from(path.string(), device);
    c10::IValue info;
    archive_.read("info", info);
    info_ = from_json(nlohmann::json::parse(info.toStringRef()));
    c10::IValue states;
    if (archive_.try_read("plugin_states", states))  // absent from checkpoints older than plugin state
      info_.plugin_states = wire::decode_value(states.toStringRef().data(), states.toStringRef().size());
  } catch (const c10::Error& e) {  // its what() carries a C++ stack trace: not for users
    throw std::runtime_error(path.string() + " is not a readable Bulkhead checkpoint (" +
                             first_line(e.what_without_backtrace()) + ")");
  } catch (const std::exception& e) {
    throw std::runtime_error(path.string() + " is not a readable Bulkhead checkpoint (" + first_line(e.what()) + ")");
  }
}

FlowModel Checkpoint::make_model() {
  FlowModel model(model_options(info_.config, static_cast<std::int64_t>(info_.vocab.size())));
  torch::serialize::InputArchive weights;
  archive_.read("model", weights);
  model->to(device_);
  model->load(weights);
  return model;
}

void Checkpoint::load_optimizer(torch::optim::Optimizer& optimizer) {
  torch::serialize::InputArchive state;
  archive_.read("optimizer", state);
  optimizer.load(state);
}

void Checkpoint::load_rng(at::Generator& rng) {
  torch::Tensor state;
  archive_.read("rng", state);
  rng.set_state(state.to(torch::kCPU));
}

}  // namespace bulkhead
