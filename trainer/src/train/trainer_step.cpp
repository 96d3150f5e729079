// trainer_step.cpp — the model's compute: one training step (forward, backward, its metrics and step
// hooks), the optimizer step, the validation pass, the learning-rate schedule, and benchmark mode's pacing.
#include "train/trainer_parts.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

#include "supervisor/plugin_runner.hpp"
#include "train/model_access.hpp"

namespace bulkhead {
using namespace trainer_parts;

// One batch: forward, backward, and an optimizer step every grad_accum batches
// (and at the end of the epoch, so no gradient is carried into the next one).
void Trainer::train_step(const Batch& batch, int local_step, int epoch_length) {
  const auto started = std::chrono::steady_clock::now();
  const int grad_accum = position_.grad_accum;
  const double lr = lr_at(position_.global_step);
  Json summary = batch_summary(batch);
  Json ed_state = {{"grad_accum", grad_accum}, {"lr", lr}, {"batch_size", config_.batch_size}};
  Json kwargs = {{"epoch", position_.epoch},         {"local_step", local_step},
                 {"global_step", position_.global_step}, {"project_name", config_.project_name},
                 {"log_folder", run_dir_.string()},  {"batch", summary},
                 {"ed_state", ed_state}};
  notify("on_step_start", kwargs);

  // Each batch's loss is divided by the size of its accumulation group, so
  // the summed gradient is the group's mean whatever grad_accum is.
  const int group_start = local_step / grad_accum * grad_accum;
  const int group_size = std::min(grad_accum, epoch_length - group_start);
  const bool optimizer_step = local_step + 1 == group_start + group_size;

  // Data parallel: this rank's rows of the batch; its loss weighted by its share, so that the
  // ranks' gradients summed are the whole batch's.
  const std::int64_t rows = batch.images.size(0), global_rows = ranks_ ? batch.global_rows : rows;
  double loss_value = kPacedLoss;
  if (paced()) {
    // Benchmark mode: the model's compute is a wait. The CPU is free meanwhile, as it is while a
    // GPU computes: the loader's workers and the plugin hosts run on.
    pace();
    if (optimizer_step) {
      if (leader()) model_access_->before_step();
      ++position_.optimizer_steps;
      if (leader()) model_access_->after_step(position_.global_step);
    }
  } else {
    model_->train();
    torch::Tensor loss;
    {
      AutocastScope autocast(amp_);
      loss = flow_matching_loss(model_, batch.images.to(device_), batch.tokens.to(device_), rng_, batch.first_row,
                                global_rows);
    }
    if (!ranks_) (loss / group_size).backward();
    else if (rows > 0) (loss * (double(rows) / double(global_rows)) / group_size).backward();
    if (optimizer_step) step_optimizer(lr);
    loss_value = rows > 0 ? loss.item<double>() : 0.0;
    if (ranks_) {
      auto share = torch::tensor({loss_value * double(rows) / double(global_rows)}, torch::kFloat64);
      ranks_->allreduce_sum(share);
      loss_value = share.item<double>();
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const double samples_per_s = global_rows / std::max(seconds, 1e-9);
  samples_seen_ += static_cast<double>(global_rows);
  train_seconds_ += seconds;

  log_metrics({{"step", position_.global_step},
               {"epoch", position_.epoch},
               {"local_step", local_step},
               {"loss", loss_value},
               {"lr", lr},
               {"grad_accum", grad_accum},
               {"optimizer_steps", position_.optimizer_steps},
               {"samples_per_s", samples_per_s}});
  if (leader())
    progress_->update({position_.epoch, config_.max_epochs, local_step, epoch_length, position_.global_step,
                       static_cast<std::int64_t>(config_.max_epochs) * epoch_length, loss_value, samples_per_s,
                       samplings_left()});

  kwargs["data_root"] = data_root_;
  kwargs["loss"] = loss_value;
  kwargs["lr"] = lr;
  kwargs["step_time_s"] = seconds;
  kwargs["samples_per_s"] = samples_per_s;
  notify("on_step_end", kwargs);

  ++position_.global_step;  // after on_step_end, as in EveryDream2
  position_.batches_done = local_step + 1;
  // Not waited for: the host answers after on_step_end, and the reply is kept when it comes.
  if (config_.plugin_state_every_n_steps > 0 && position_.global_step % config_.plugin_state_every_n_steps == 0)
    plugins_->snapshot_states(position_.global_step, "step", false);
  step_boundary();
}

void Trainer::step_optimizer(double lr) {
  if (ranks_) reduce_gradients();
  if (leader()) {
    model_access_->before_step();
    torch::nn::utils::clip_grad_norm_(model_->parameters(), config_.max_grad_norm);
    for (auto& group : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    optimizer_->step();
    optimizer_->zero_grad();
  }
  ++position_.optimizer_steps;
  if (leader()) model_access_->after_step(position_.global_step);
  if (ranks_) take_leaders_weights();
}

// On rank 0, over the whole validation set (the other ranks go on to the next step boundary).
void Trainer::validate(int epoch) {
  if (validation_.examples.empty() || !leader()) return;
  torch::NoGradGuard no_grad;
  model_->eval();
  // The same noise and timesteps every epoch, so val_loss moves only with the model.
  auto rng = at::make_generator<at::CPUGeneratorImpl>(config_.seed + 1);
  LoaderOptions options;
  options.batch_size = config_.batch_size;
  options.workers = config_.num_workers;
  options.max_tokens = config_.max_tokens;
  options.seed = config_.seed;
  options.shuffle = false;
  EpochLoader loader(validation_, vocab_, /*transforms=*/nullptr, options, 0);
  double total = 0;
  while (auto batch = loader.next()) {
    if (paced()) {
      pace();
      total += kPacedLoss * batch->images.size(0);
      continue;
    }
    AutocastScope autocast(amp_);
    auto loss = flow_matching_loss(model_, batch->images.to(device_), batch->tokens.to(device_), rng);
    total += loss.item<double>() * batch->images.size(0);
  }
  const double val_loss = total / validation_.examples.size();
  progress_->clear();
  log_->info("epoch {}/{}: val_loss {:.5f}", epoch + 1, config_.max_epochs, val_loss);
  log_metrics({{"step", position_.global_step}, {"epoch", epoch}, {"val_loss", val_loss}});
  notify("on_validation_end", {{"epoch", epoch}, {"global_step", position_.global_step}, {"val_loss", val_loss}});
}

// Linear warm-up, then cosine decay to zero at the last step (or constant).
// Counted in batches, so a grad_accum change does not move the schedule.
double Trainer::lr_at(std::int64_t step) const {
  if (step < config_.lr_warmup_steps) return config_.lr * double(step + 1) / config_.lr_warmup_steps;
  if (config_.lr_scheduler == "constant") return config_.lr;
  const double total = double(config_.max_epochs) * epoch_length_ - config_.lr_warmup_steps;
  const double progress = std::min(1.0, double(step - config_.lr_warmup_steps) / std::max(1.0, total));
  return config_.lr * 0.5 * (1 + std::cos(M_PI * progress));
}

// Benchmark mode (bench_pace_ms): the model's compute, forward, backward and optimizer step (or a
// validation batch's forward), is replaced by a wait of bench_pace_ms.
void Trainer::pace() const {
  std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(config_.bench_pace_ms));
}

}  // namespace bulkhead
