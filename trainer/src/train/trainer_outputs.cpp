// trainer_outputs.cpp — what a run writes: sample grids, checkpoints (saved, pruned, deleted on a
// plugin's request) and metrics (metrics.jsonl, tensorboard, on_log).
#include "train/trainer_parts.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>

#include "common/atomic_file.hpp"
#include "supervisor/plugin_runner.hpp"
#include "train/model_access.hpp"
#include "train/sampling.hpp"
#include "train/tensorboard.hpp"

namespace bulkhead {

namespace {

std::vector<std::string> default_prompts(const TrainConfig& config, const Dataset& validation, const Dataset& train) {
  if (!config.sample_prompts.empty()) return config.sample_prompts;
  if (config.builtin_data())
    return {"a red circle on a white background, center",      "a blue square on a black background, top left",
            "a green triangle on a gray background, bottom right", "a yellow diamond on a black background, top right",
            "a purple cross on a white background, bottom left",  "an orange circle on a gray background, top left"};
  std::vector<std::string> prompts;
  const Dataset& source = validation.examples.empty() ? train : validation;
  for (std::size_t i = 0; i < source.examples.size() && prompts.size() < 6; ++i)
    prompts.push_back(source.examples[i].caption);
  return prompts;
}

}  // namespace

// Sample grids still to come after the current step: per step, per epoch and the final one.
int Trainer::samplings_left() const {
  const std::int64_t total = static_cast<std::int64_t>(config_.max_epochs) * epoch_length_;
  const std::int64_t done = position_.global_step + 1;
  int left = 1;
  if (config_.sample_steps > 0) left += static_cast<int>(total / config_.sample_steps - done / config_.sample_steps);
  if (config_.sample_every_n_epochs > 0)
    left += (config_.max_epochs - 1) / config_.sample_every_n_epochs - position_.epoch / config_.sample_every_n_epochs;
  return left;
}

void Trainer::write_samples(const std::string& name) {
  if (paced() || !leader()) return;  // sampling is the model's compute, and the model is not trained
  const auto started = std::chrono::steady_clock::now();
  auto prompts = default_prompts(config_, validation_, train_);
  if (prompts.empty()) return;
  for (auto& prompt : prompts)
    for (auto& word : vocab_.unknown_words(prompt))
      log_->warn("sample prompt \"{}\": the word \"{}\" is not in the vocabulary", prompt, word);
  SampleOptions options;
  options.steps = config_.sample_inference_steps;
  options.guidance = config_.sample_guidance;
  options.seed = config_.seed;
  options.per_prompt = 4;
  options.amp = amp_;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "-gs%06lld", static_cast<long long>(position_.global_step));
  auto grid = write_sample_grid(run_dir_ / "samples" / (name + suffix), model_, vocab_, prompts, options);
  summary_.last_samples = grid.png;
  events_->image("samples", position_.global_step, grid.image);
  progress_->add_sampling_time(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  progress_->clear();
  log_->info("samples: {}", summary_.last_samples.string());
}

// ckpt_every_n_minutes since the last checkpoint (or the start).
bool Trainer::checkpoint_time_due() const {
  if (config_.ckpt_every_n_minutes <= 0 || !leader()) return false;
  const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_save_).count() / 60;
  return minutes >= config_.ckpt_every_n_minutes;
}

// Epoch and time checkpoints beyond the newest keep_last_n_checkpoints are deleted; the others
// (final, interrupted, errored, requested) were asked for one by one and stay.
void Trainer::prune_checkpoints() {
  if (config_.keep_last_n_checkpoints <= 0) return;
  std::vector<fs::path> routine;
  for (auto& entry : fs::directory_iterator(run_dir_ / "checkpoints")) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".pt" && (name.rfind("epoch-", 0) == 0 || name.rfind("time-", 0) == 0))
      routine.push_back(entry.path());
  }
  // Names end in -gsNNNNNN.pt: the step, zero-padded, sorts them oldest first.
  std::sort(routine.begin(), routine.end(), [](const fs::path& a, const fs::path& b) {
    return a.filename().string().substr(a.filename().string().rfind("-gs")) <
           b.filename().string().substr(b.filename().string().rfind("-gs"));
  });
  const auto keep = static_cast<std::size_t>(config_.keep_last_n_checkpoints);
  for (std::size_t i = 0; i + keep < routine.size(); ++i) {
    if (routine[i] == summary_.last_checkpoint) continue;
    fs::remove(routine[i]);
    fs::remove_all(routine[i].string() + ".files");  // what model-access plugins saved with it
    log_->info("removed {} (keep_last_n_checkpoints {})", routine[i].filename().string(), keep);
  }
}

// Rank 0's alone: every rank holds the same weights, and a resumed run hands them to its ranks.
fs::path Trainer::save(const std::string& reason, const std::string& tag) {
  if (!leader()) return {};
  char name[96];
  std::snprintf(name, sizeof name, "%s%s%s-ep%04d-gs%06lld.pt", reason.c_str(), tag.empty() ? "" : "-", tag.c_str(),
                position_.epoch, static_cast<long long>(position_.global_step));
  const fs::path path = run_dir_ / "checkpoints" / name;
  // After a signal or an error the plugins are not asked (they may be why): their latest states go in.
  if (reason != "interrupted" && reason != "errored") plugins_->snapshot_states(position_.global_step, "checkpoint", true);
  Json requested = Json::array();
  for (const auto& saved : requested_checkpoints_)
    requested.push_back({{"path", saved.path.string()}, {"plugin", saved.source}, {"tag", saved.tag}});
  save_checkpoint(path, model_, optimizer_.get(), rng_,
                  {position_, reason, tag, config_.json, vocab_, plugins_->saved_states(), requested});
  summary_.last_checkpoint = path;
  last_save_ = std::chrono::steady_clock::now();
  progress_->clear();
  log_->info("checkpoint ({}) {}", reason, path.string());
  prune_checkpoints();
  model_access_->saved(path, reason, position_.global_step);
  Json kwargs = {{"path", path.string()},
                 {"reason", reason},
                 {"epoch", position_.epoch},
                 {"global_step", position_.global_step}};
  if (!tag.empty()) kwargs["tag"] = tag;
  notify("on_checkpoint_saved", kwargs);
  return path;
}

// A plugin cannot reach the run folder: it asks, and only for what the trainer saved on its own request.
void Trainer::delete_requested_checkpoint(const std::string& source, const Json& request) {
  const bool by_path = request.contains("path");
  const std::string wanted = by_path ? request["path"].get<std::string>() : request["tag"].get<std::string>();
  const auto found = std::find_if(requested_checkpoints_.rbegin(), requested_checkpoints_.rend(), [&](const auto& saved) {
    return saved.source == source && (by_path ? saved.path == fs::path(wanted) : saved.tag == wanted);
  });
  if (found == requested_checkpoints_.rend()) {
    log_->warn("{} asked to delete {}{}, which is not a checkpoint saved on its request: refused", source,
               by_path ? "" : "the checkpoint tagged ", wanted);
    return;
  }
  std::error_code error;
  fs::remove(found->path, error);
  if (error) log_->warn("could not delete {} for {}: {}", found->path.string(), source, error.message());
  else log_->info("deleted {} for {}", found->path.string(), source);
  requested_checkpoints_.erase(std::next(found).base());
}

void Trainer::log_metrics(Json record) {
  if (!leader()) return;
  // nlohmann writes doubles in the shortest form that reads back to the same bits.
  metrics_ << record.dump() << "\n";
  metrics_.flush();
  if (!metrics_) throw IoError(run_dir_ / "metrics.jsonl", "write", errno ? errno : EIO);
  for (auto& [key, value] : record.items())
    if (key != "step" && key != "epoch" && key != "local_step") events_->scalar(key, record.at("step"), value.get<float>());
  notify("on_log", {{"metrics", record}});
}

}  // namespace bulkhead
