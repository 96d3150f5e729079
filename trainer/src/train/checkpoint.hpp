// checkpoint.hpp — everything needed to continue a run exactly, in one file.
//
//   save_checkpoint(path, model, &optimizer, rng, info);   // written to path.tmp, then renamed
//   Checkpoint checkpoint(path, device);                     // reads the file once
//   FlowModel model = checkpoint.make_model();
//   checkpoint.load_optimizer(optimizer); checkpoint.load_rng(rng);
//
// A checkpoint holds the model's weights, the AdamW state, the random
// generator's state, the position in training, the vocabulary and the
// resolved config, and the plugins' states. A file under its final name is always complete: a crash
// while saving leaves only a .tmp file behind.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "train/model.hpp"
#include "train/vocab.hpp"

namespace bulkhead {

// Where training stands. Checkpoints are only taken at optimizer-step
// boundaries, so no half-accumulated gradient is ever lost.
struct TrainPosition {
  int epoch = 0;                  // the epoch in progress (or the next one when batches_done is 0)
  int batches_done = 0;           // batches of that epoch already trained on
  std::int64_t global_step = 0;   // batches trained on in the whole run
  std::int64_t optimizer_steps = 0;
  int grad_accum = 1;             // in force for the current epoch
  int next_grad_accum = 1;        // requested by a plugin, in force from the next epoch
};

nlohmann::json position_to_json(const TrainPosition& position);
TrainPosition position_from_json(const nlohmann::json& j);

struct CheckpointInfo {
  TrainPosition position;
  std::string reason;  // epoch | time | final | requested | interrupted | errored
  std::string tag;     // from a plugin's save_checkpoint request, may be empty
  nlohmann::json config;
  Vocabulary vocab;
  // Plugin name -> {"state", "global_step"}: each stateful plugin's latest state (docs/protocol.md, section 10).
  nlohmann::json plugin_states = nlohmann::json::object();
  // [{"path", "plugin", "tag"}]: checkpoints saved on a plugin's request and not deleted, which
  // that plugin may still ask to delete after a resume.
  nlohmann::json requested_checkpoints = nlohmann::json::array();
};

FlowModelOptions model_options(const nlohmann::json& config, std::int64_t vocab_size);

void save_checkpoint(const std::filesystem::path& path, FlowModel& model, torch::optim::Optimizer* optimizer,
                     const at::Generator& rng, const CheckpointInfo& info);

// A run folder means its latest checkpoint (checkpoints/latest.txt).
std::filesystem::path resolve_checkpoint_path(const std::filesystem::path& run_folder_or_file);

class Checkpoint {
 public:
  // Tensors are read onto device, where the model and optimizer will live.
  explicit Checkpoint(const std::filesystem::path& path, const torch::Device& device = torch::kCPU);
  const CheckpointInfo& info() const { return info_; }
  const std::filesystem::path& path() const { return path_; }
  // A model of the saved shape with the saved weights, on the checkpoint's device.
  FlowModel make_model();
  void load_optimizer(torch::optim::Optimizer& optimizer);
  void load_rng(at::Generator& rng);

 private:
  std::filesystem::path path_;
  torch::Device device_;
  torch::serialize::InputArchive archive_;
  CheckpointInfo info_;
};

}  // namespace bulkhead
