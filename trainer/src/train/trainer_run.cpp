// trainer_run.cpp — the run: epochs until max_epochs, a stop request or a signal, and how it ends
// (final, interrupted or errored); an epoch's loop and its loaders.
#include "train/trainer_parts.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "common/log.hpp"
#include "supervisor/plugin_runner.hpp"
#include "train/loss_plot.hpp"
#include "train/model_access.hpp"

namespace bulkhead {
using namespace trainer_parts;

namespace {

std::atomic<int> g_interrupt{0};  // the signal that asked to stop, 0 for none
static_assert(std::atomic<int>::is_always_lock_free, "request_interrupt must be async-signal-safe");

std::string signal_name(int signal) {
  const char* abbreviation = sigabbrev_np(signal);
  return abbreviation ? std::string("SIG") + abbreviation : "signal " + std::to_string(signal);
}

// File sinks buffer; train.log must be complete when run() returns or throws.
void flush_logs() {
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& log) { log->flush(); });
}

// "step-000300", "epoch-0010": names that sort in training order.
std::string step_name(const char* kind, std::int64_t number, int digits = 6) {
  char name[48];
  std::snprintf(name, sizeof name, "%s-%0*lld", kind, digits, static_cast<long long>(number));
  return name;
}

}  // namespace

void request_interrupt(int signal) { g_interrupt.store(signal); }
void clear_interrupt() { g_interrupt.store(0); }
int requested_interrupt() { return g_interrupt.load(); }

bool Trainer::interrupt_requested() const { return ranks_ ? agreed_signal_ != 0 : interrupted(); }
int Trainer::interrupt_signal() const { return ranks_ ? agreed_signal_ : g_interrupt.load(); }

RunSummary Trainer::run() {
  progress_ = std::make_unique<Progress>(position_.global_step, config_.log_every_n_steps);
  try {
    Json start = run_kwargs();
    start["max_epochs"] = config_.max_epochs;
    start["epoch_length"] = epoch_length_;
    call("on_training_start", start);

    while (position_.epoch < config_.max_epochs && !stop_requested_ && !interrupt_requested()) run_epoch();

    progress_->clear();
    if (interrupt_requested()) {
      // Like EveryDream2: save and leave at once, without on_training_end.
      summary_.signal = interrupt_signal();
      log_->warn("interrupted by {}: saving a checkpoint and stopping the plugins", signal_name(summary_.signal));
      save("interrupted");
      summary_.outcome = RunOutcome::interrupted;
    } else {
      call("on_training_end", {{"project_name", config_.project_name},
                               {"log_folder", run_dir_.string()},
                               {"global_step", position_.global_step}});
      write_samples("final");
      save("final");
      summary_.outcome = stop_requested_ ? RunOutcome::stopped : RunOutcome::completed;
    }
  } catch (const RankLost& e) {
    // What this rank holds may be a step ahead of another's: the launcher restarts every rank from
    // the last checkpoint, and this one saves nothing.
    progress_->clear();
    log_->error("{}", e.what());
    next_epoch_loader_.reset();
    finish_plugins();
    flush_logs();
    throw;
  } catch (const std::exception& e) {
    progress_->clear();
    log_->error("training failed: {}; saving an errored checkpoint", e.what());
    try {
      save("errored");
    } catch (const std::exception& inner) {
      log_->error("could not save the errored checkpoint: {}", inner.what());
    }
    next_epoch_loader_.reset();
    finish_plugins();
    flush_logs();
    throw;
  }
  next_epoch_loader_.reset();  // a stop left it unused; its workers call the plugins
  finish_plugins();
  summary_.global_step = position_.global_step;
  summary_.epochs_done = position_.epoch;
  summary_.samples_per_s = train_seconds_ > 0 ? samples_seen_ / train_seconds_ : 0;
  if (summary_.skipped_images)
    log_->warn("{} corrupt image(s) were skipped (see the warnings above)", summary_.skipped_images);
  if (!leader()) {
    log_->info("rank {} done after {} steps", ranks_->rank(), position_.global_step);
    flush_logs();
    return summary_;
  }
  log_->info("done after {} steps ({:.1f} samples/s); checkpoint {}", position_.global_step, summary_.samples_per_s,
             summary_.last_checkpoint.string());
  if (model_access_->active() && train_seconds_ > 0)
    log_->info("model access took {:.1f} ms of {:.1f} s of training steps ({:.2f} %)", model_access_->step_seconds() * 1000,
               train_seconds_, 100 * model_access_->step_seconds() / train_seconds_);
  if (!summary_.last_samples.empty()) log_->info("samples in {}", (run_dir_ / "samples").string());
  log_->info("curves in {} (tensorboard --logdir {}) and {}", (run_dir_ / "tensorboard").string(), run_dir_.string(),
             (run_dir_ / "loss.png").string());
  flush_logs();
  return summary_;
}

void Trainer::run_epoch() {
  const auto epoch_started = std::chrono::steady_clock::now();
  const int epoch = position_.epoch;
  if (position_.batches_done == 0) position_.grad_accum = position_.next_grad_accum;  // set_arg takes effect here
  Json kwargs = run_kwargs();
  kwargs["epoch"] = epoch;
  kwargs["global_step"] = position_.global_step;
  kwargs["epoch_length"] = epoch_length_;
  call("on_epoch_start", kwargs);

  const auto loader = loader_for(epoch, position_.batches_done);
  for (int local_step = position_.batches_done; auto batch = loader->next(); ++local_step) {
    train_step(*batch, local_step, epoch_length_);
    const bool at_optimizer_step = position_.batches_done % position_.grad_accum == 0 ||
                                   position_.batches_done == epoch_length_;
    if (config_.sample_steps > 0 && position_.global_step % config_.sample_steps == 0)
      write_samples(step_name("step", position_.global_step));
    if (!at_optimizer_step) continue;
    for (auto& [source, tag] : std::exchange(checkpoint_requests_, {}))
      requested_checkpoints_.push_back({save("requested", tag), source, tag});
    if (checkpoint_time_due()) save("time");
    if ((stop_requested_ || interrupt_requested()) && position_.batches_done < epoch_length_) return;
  }
  position_.epoch = epoch + 1;
  position_.batches_done = 0;
  start_next_epoch_loader(epoch + 1);

  validate(epoch);
  if (leader()) write_loss_plot(run_dir_ / "metrics.jsonl", run_dir_ / "loss.png");
  kwargs.erase("epoch_length");  // EveryDream2 passes no epoch_length here
  kwargs["global_step"] = position_.global_step;
  call("on_epoch_end", kwargs);
  if (config_.plugin_state_each_epoch) plugins_->snapshot_states(position_.global_step, "epoch", true);
  // The epoch's wall time, hooks and loader waits included (bench/overhead.py compares it with and
  // without plugins); the samples and checkpoints written after it are not part of it.
  log_metrics({{"step", position_.global_step},
               {"epoch", epoch},
               {"epoch_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_started).count()}});

  const int done = epoch + 1;
  const bool last = done == config_.max_epochs;
  if (!last && config_.sample_every_n_epochs > 0 && done % config_.sample_every_n_epochs == 0)
    write_samples(step_name("epoch", done, 4));
  if (!last && config_.save_every_n_epochs > 0 && done % config_.save_every_n_epochs == 0) save("epoch");
  for (auto& [source, tag] : std::exchange(checkpoint_requests_, {}))
    requested_checkpoints_.push_back({save("requested", tag), source, tag});
}

std::unique_ptr<EpochLoader> Trainer::loader_for(int epoch, int first_batch) {
  if (next_epoch_loader_ && next_epoch_loader_epoch_ == epoch && first_batch == 0) return std::move(next_epoch_loader_);
  next_epoch_loader_.reset();
  LoaderOptions options;
  options.batch_size = config_.batch_size;
  options.workers = config_.num_workers;
  options.max_tokens = config_.max_tokens;
  options.cond_dropout = config_.cond_dropout;
  options.seed = config_.seed;
  options.first_batch = first_batch;
  options.prefetch_batches = config_.prefetch_batches;
  options.batch_transforms = config_.batch_transforms;
  if (ranks_) {
    options.rank = ranks_->rank();
    options.world_size = ranks_->world_size();
  }
  return std::make_unique<EpochLoader>(train_, vocab_, plugins_->empty() ? nullptr : plugins_.get(), options, epoch);
}

// An epoch's order and noise come from the seed and the epoch's number alone, so its batches are
// the same whenever they are made. What could tell is a plugin that transforms samples and also
// sees the epoch end (or keeps a state that a checkpoint of this epoch would hold): then the next
// epoch's samples wait for the next epoch, as in EveryDream2.
void Trainer::start_next_epoch_loader(int next_epoch) {
  if (next_epoch >= config_.max_epochs || stop_requested_ || interrupt_requested() || !plugins_->transforms_see_only_items())
    return;
  if (next_epoch_loader_epoch_ < 0 && !plugins_->empty())
    log_->info("the loader makes each next epoch's samples while an epoch ends: its transform plugins see nothing but samples");
  next_epoch_loader_ = loader_for(next_epoch, 0);
  next_epoch_loader_epoch_ = next_epoch;
}

}  // namespace bulkhead
