#include "train/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>

namespace bulkhead {
namespace fs = std::filesystem;
namespace {

nlohmann::json to_json(const CheckpointInfo& info) {
  const TrainPosition& p = info.position;
  return {{"format", "bulkhead-checkpoint-1"},
          {"epoch", p.epoch},
          {"batches_done", p.batches_done},
          {"global_step", p.global_step},
          {"optimizer_steps", p.optimizer_steps},
          {"grad_accum", p.grad_accum},
          {"next_grad_accum", p.next_grad_accum},
          {"reason", info.reason},
          {"tag", info.tag},
          {"config", info.config},
          {"vocabulary", info.vocab.to_json()}};
}

CheckpointInfo from_json(const nlohmann::json& j) {
  CheckpointInfo info;
  info.position.epoch = j.at("epoch");
  info.position.batches_done = j.at("batches_done");
  info.position.global_step = j.at("global_step");
  info.position.optimizer_steps = j.at("optimizer_steps");
  info.position.grad_accum = j.at("grad_accum");
  info.position.next_grad_accum = j.at("next_grad_accum");
  info.reason = j.at("reason");
  info.tag = j.at("tag");
  info.config = j.at("config");
  info.vocab = Vocabulary::from_json(j.at("vocabulary"));
  return info;
}

void sync_file(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Write beside the target, flush to disk, rename: readers see the old file or the new one, never a part.
template <typename Write>
void write_atomically(const fs::path& path, Write write) {
  fs::path temp = path;
  temp += ".tmp";
  write(temp);
  sync_file(temp);
  fs::rename(temp, path);
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
  write_atomically(path, [&](const fs::path& temp) { archive.save_to(temp.string()); });
  write_atomically(path.parent_path() / "latest.txt",
                   [&](const fs::path& temp) { std::ofstream(temp) << path.filename().string() << "\n"; });
}

fs::path resolve_checkpoint_path(const fs::path& given) {
  if (!fs::is_directory(given)) {
    if (!fs::exists(given)) throw std::runtime_error("no checkpoint at " + given.string());
    return given;
  }
  for (const fs::path& folder : {given / "checkpoints", given}) {
    std::ifstream latest(folder / "latest.txt");
    std::string name;
    if (latest && std::getline(latest, name) && fs::exists(folder / name)) return folder / name;
  }
  throw std::runtime_error(given.string() + " holds no checkpoint (no checkpoints/latest.txt)");
}

Checkpoint::Checkpoint(const fs::path& path, const torch::Device& device) : path_(path), device_(device) {
  try {
    archive_.load_from(path.string(), device);
    c10::IValue info;
    archive_.read("info", info);
    info_ = from_json(nlohmann::json::parse(info.toStringRef()));
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot read checkpoint " + path.string() + ": " + e.what());
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
