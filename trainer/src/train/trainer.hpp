// trainer.hpp — one training run, from a resolved config to the final checkpoint.
//
//   TrainConfig config = resolve_config(user_json, "train.json");
//   Trainer trainer(config);                  // or Trainer(config, "runs/x/checkpoints/latest.pt") to resume
//   RunSummary summary = trainer.run();       // throws TrainingAborted when a plugin set to "abort" failed
//
// The run folder (locked for the run's life: see run_folder.hpp) gets config.json,
// metrics.jsonl, tensorboard/, loss.png, train.log, samples/, checkpoints/ and plugin-report.json
// (and plugin-report.live.json, rewritten every few seconds while it trains). Plugins see EveryDream2's hooks with
// the kwargs in schemas/hooks.json; their control requests (stop, save a
// checkpoint, change grad_accum) are validated, logged and applied.
//
// One rank of a data-parallel run (bulkhead train --nproc, docs/training.md): given RankSettings,
// the trainer trains on its share of each batch. Rank 0 is the run: it alone reads the checkpoint,
// runs the observer hooks, model access and control, steps the optimizer and writes the run
// folder; it hands every rank its model at the start and its weights after each optimizer step,
// and its decisions at each step boundary, so that no rank ever waits alone.
#pragma once

#include <csignal>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "common/log.hpp"
#include "distributed/rank_group.hpp"
#include "train/checkpoint.hpp"
#include "train/config.hpp"
#include "train/dataset.hpp"
#include "train/loader.hpp"
#include "train/model.hpp"
#include "train/progress.hpp"
#include "train/run_control.hpp"
#include "train/run_folder.hpp"
#include "train/vocab.hpp"

namespace bulkhead {

class PluginRunner;
class EventWriter;
class ModelAccess;

// A plugin configured with on_failure "abort" failed; an "errored" checkpoint has been saved.
struct TrainingAborted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class RunOutcome {
  completed,    // ran to max_epochs
  stopped,      // a plugin asked to stop; ended like a completed run
  interrupted,  // Ctrl-C, SIGTERM or SIGHUP: "interrupted" checkpoint saved, plugins stopped
};

struct RunSummary {
  RunOutcome outcome = RunOutcome::completed;
  std::filesystem::path run_dir;
  std::filesystem::path last_checkpoint;
  std::filesystem::path last_samples;  // the latest grid, "" if none was written
  std::int64_t global_step = 0;
  int epochs_done = 0;
  std::size_t skipped_images = 0;
  double samples_per_s = 0;            // mean over the steps of this process
  int signal = 0;                      // the signal that interrupted the run, when outcome is interrupted
};

// Ctrl-C, SIGTERM, SIGHUP: the run stops at the next optimizer step. Safe to call from a signal handler.
void request_interrupt(int signal = SIGINT);
void clear_interrupt();
int requested_interrupt();  // the signal asked for, 0 for none

// The folder a run writes: the resumed checkpoint's own, config.run_dir, or a new one in config.logdir.
RunFolder claim_run_folder(const TrainConfig& config, const std::optional<std::filesystem::path>& resume, bool overwrite);

class Trainer {
 public:
  // Claims the run folder, loads the data, builds the model (or restores it from resume) and
  // starts the plugins. Throws ConfigError / DataError before any training. The run folder must
  // be new or empty, or the resumed checkpoint's own; overwrite deletes an earlier run in it.
  explicit Trainer(TrainConfig config, std::optional<std::filesystem::path> resume = std::nullopt,
                   bool overwrite = false, std::optional<RankSettings> rank = std::nullopt);
  ~Trainer();

  RunSummary run();

  // Sees every hook the plugins see, after them; what it returns is handled
  // like plugin control requests. Lets tests and embedders watch and steer a run.
  using HookObserver = std::function<std::vector<nlohmann::json>(const std::string& hook, const nlohmann::json& kwargs)>;
  void set_hook_observer(HookObserver observer) { observer_ = std::move(observer); }
  // Restart a plugin, with its state, when its files change on disk (bulkhead train --watch-plugins).
  void watch_plugins();
  // The run folder it claimed (bulkhead train --web serves it while it trains).
  const std::filesystem::path& run_dir() const { return run_dir_; }

 private:
  // Setup
  void create_run_folder(const std::optional<std::filesystem::path>& resume, bool overwrite);
  void create_rank_folder();  // ranks other than 0: ranks/rank-N under the run folder, for logs and plugin scratch
  void build_model(const std::optional<std::filesystem::path>& resume, std::optional<Checkpoint>& checkpoint);
  // After the plugins' on_model_load: what they froze is known, and the embedding has its final size.
  void build_optimizer(std::optional<Checkpoint>& checkpoint);
  // Data parallel: every rank takes rank 0's model, position and noise generator.
  void share_leaders_model();
  void keep_only_transforms_here();  // ranks other than 0 run their plugins' transforms only
  bool transforms_samples(const std::string& plugin) const;
  bool leader() const { return !ranks_ || ranks_->leader(); }

  // The loop, in the order it runs
  void run_epoch();
  // The loader of `epoch` from `first_batch`: the one started ahead at the previous epoch's end
  // when it fits, else a new one.
  std::unique_ptr<EpochLoader> loader_for(int epoch, int first_batch);
  // Starts the next epoch's loader while this epoch ends (validation, on_epoch_end, checkpoints),
  // when nothing can tell: no plugin transforms samples, or each that does implements nothing else.
  void start_next_epoch_loader(int next_epoch);
  void train_step(const Batch& batch, int local_step, int epoch_length);
  // Clip, AdamW and model access; data parallel: on rank 0, with every rank's gradients, then its weights to all.
  void step_optimizer(double lr);
  void reduce_gradients();      // data parallel: every rank's gradients summed on rank 0
  void take_leaders_weights();  // data parallel: rank 0's weights after its optimizer step, on every rank
  void validate(int epoch);
  bool paced() const { return config_.bench_pace_ms > 0; }
  void pace() const;
  void write_samples(const std::string& name);
  int samplings_left() const;
  // Writes a checkpoint and tells the plugins; returns its path.
  std::filesystem::path save(const std::string& reason, const std::string& tag = "");
  // A plugin's delete_checkpoint: by path, or by the tag it saved it with (the newest of that tag).
  void delete_requested_checkpoint(const std::string& source, const nlohmann::json& request);
  bool checkpoint_time_due() const;
  void prune_checkpoints();

  // Plugins
  void call(const std::string& hook, const nlohmann::json& kwargs);
  void notify(const std::string& hook, const nlohmann::json& kwargs);
  void handle_control_requests();
  // After each step and each waited-for hook: control requests applied and an abort raised; data
  // parallel: on every rank alike, as rank 0 decided (a stop, a grad_accum, a plugin restarted)
  // and whatever any rank saw (a stop signal, a plugin failure under "abort").
  void step_boundary();
  void apply_decision(const nlohmann::json& decision);  // ranks other than 0
  bool interrupt_requested() const;
  int interrupt_signal() const;
  nlohmann::json with_rank(nlohmann::json kwargs) const;
  void apply_control(const std::string& source, const nlohmann::json& request);
  run_control::Answer apply_user_request(const run_control::Request& request);
  void check_abort();
  nlohmann::json run_kwargs() const;  // project_name, log_folder, data_root
  nlohmann::json batch_summary(const Batch& batch) const;

  double lr_at(std::int64_t step) const;
  void log_metrics(nlohmann::json record);
  void write_live_report(bool at_end);
  void finish_plugins();

  TrainConfig config_;
  std::optional<RankSettings> rank_;
  std::unique_ptr<RankGroup> ranks_;          // data parallel: the other ranks
  nlohmann::json decision_ = nlohmann::json::object();  // rank 0's decisions since the last step boundary
  int agreed_signal_ = 0;                     // data parallel: the stop signal every rank acts on
  std::shared_ptr<spdlog::logger> log_;
  torch::Device device_{torch::kCPU};
  bool amp_ = false;
  std::optional<RunFolder> folder_;  // held (locked) for the trainer's life
  std::filesystem::path run_dir_;
  std::string data_root_;

  Dataset train_, validation_;
  Vocabulary vocab_;
  FlowModel model_{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  at::Generator rng_;  // all training noise and timesteps; saved in checkpoints
  TrainPosition position_;
  int epoch_length_ = 0;

  std::unique_ptr<PluginRunner> plugins_;
  nlohmann::json resumed_plugin_states_ = nlohmann::json::object();  // from the resumed checkpoint
  std::unique_ptr<ModelAccess> model_access_;  // plugins' reads and validated writes of the model
  HookObserver observer_;
  std::vector<std::pair<std::string, nlohmann::json>> observer_requests_;
  bool stop_requested_ = false;
  std::vector<std::pair<std::string, std::string>> checkpoint_requests_;  // (who asked, tag)
  struct RequestedCheckpoint {
    std::filesystem::path path;
    std::string source, tag;  // who asked, and the tag it asked for
  };
  std::vector<RequestedCheckpoint> requested_checkpoints_;  // saved on request and not deleted, oldest first

  std::ofstream metrics_;
  std::unique_ptr<EventWriter> events_;  // run_dir/tensorboard
  std::unique_ptr<Progress> progress_;
  std::chrono::steady_clock::time_point last_save_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_live_report_{};  // plugin-report.live.json
  bool live_report_failed_ = false;
  RunSummary summary_;
  double samples_seen_ = 0, train_seconds_ = 0;
  // Its workers call the plugins, so it goes before them.
  std::unique_ptr<EpochLoader> next_epoch_loader_;
  int next_epoch_loader_epoch_ = -1;
  // Last: train.log (a rank's own, on ranks other than 0) is closed first, as the trainer goes.
  std::optional<FileLog> train_log_;
};

}  // namespace bulkhead
