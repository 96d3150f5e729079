// model_access.hpp — the trainer's side of plugins' model access (docs/protocol.md, section 9):
// on_model_load and what its replies decide (new tokens, the rows that train, what is frozen),
// frozen rows kept bit for bit, plugins' validated updates applied at optimizer step boundaries,
// on_model_step, and on_model_save's files written beside the checkpoint.
//
//   ModelAccess access(model, vocab, plugins);
//   access.load(resumed, global_step);               // before the optimizer is built
//   loss.backward(); access.before_step(); clip; optimizer.step(); access.after_step(global_step);
//   access.saved(checkpoint_path, reason, global_step);
//
// What a plugin may touch is its gate's to say (supervisor/model_gate.hpp); this class only ever
// applies what a gate admitted.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "supervisor/plugin_runner.hpp"
#include "train/model.hpp"
#include "train/vocab.hpp"

namespace bulkhead {

class ModelAccess {
 public:
  ModelAccess(FlowModel& model, Vocabulary& vocab, PluginRunner& plugins);

  // on_model_load to each plugin granted model access, in config order; then freezes what their
  // replies ask to be frozen. Grows the vocabulary and the embedding for new tokens.
  void load(bool resumed, std::int64_t global_step);
  // Rows added to the embedding in this start: a resumed optimizer's state for it no longer fits.
  std::int64_t added_rows() const { return added_rows_; }
  // Between backward and the optimizer step: frozen rows get no gradient (nor a share of the clip).
  void before_step();
  // After the optimizer step: frozen rows restored bit for bit (AdamW's weight decay touches every
  // row), admitted updates applied under no-grad, on_model_step sent.
  void after_step(std::int64_t global_step);
  // A checkpoint is on disk: on_model_save, and the files its replies return written beside it.
  void saved(const std::filesystem::path& checkpoint, const std::string& reason, std::int64_t global_step);
  // Seconds the training loop spent here, at step boundaries (what model access costs a step).
  double step_seconds() const { return step_seconds_; }
  bool active() const { return !gates_.empty(); }

 private:
  struct FrozenRows {
    torch::Tensor parameter, index, values;  // index: the frozen rows; values: their contents
  };
  void refuse_ungranted_model_hooks() const;
  void prepare_gates(std::int64_t global_step);
  void apply_load_reply(const std::string& plugin, const Json& reply);
  void freeze();
  void apply(const ModelUpdate& update);
  // The rows the plugin reads, in a region slot lent to it when `lend` and they fit, else inline.
  Json tensors_for(const std::string& plugin, ModelGate& gate, bool lend) const;
  torch::Tensor parameter(const std::string& name) const;

  FlowModel& model_;
  Vocabulary& vocab_;
  PluginRunner& plugins_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<std::pair<std::string, std::shared_ptr<ModelGate>>> gates_;
  std::map<std::string, std::set<std::int64_t>> trainable_;                     // parameter -> rows, from every reply
  std::map<std::string, std::map<std::string, std::vector<std::int64_t>>> reads_;  // plugin -> parameter -> its rows
  bool freeze_rest_ = false;
  std::int64_t added_rows_ = 0;
  std::vector<FrozenRows> frozen_;
  double step_seconds_ = 0;
};

}  // namespace bulkhead
