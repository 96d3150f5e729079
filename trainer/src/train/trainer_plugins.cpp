// trainer_plugins.cpp — hooks out: observer hooks on rank 0, the step hooks' batch summary, the
// plugin report (live while the run trains, and at its end).
#include "train/trainer_parts.hpp"

#include <chrono>
#include <ctime>

#include "common/atomic_file.hpp"
#include "supervisor/plugin_runner.hpp"

namespace bulkhead {

namespace {

constexpr std::chrono::seconds kLiveReportEvery{2};  // how often plugin-report.live.json is rewritten

}  // namespace

// Observer hooks run once, on rank 0; every rank reaches the step boundary after them.
void Trainer::call(const std::string& hook, const Json& kwargs) {
  if (leader()) {
    plugins_->call(hook, with_rank(kwargs));
    if (observer_)
      for (auto& request : observer_(hook, kwargs)) observer_requests_.emplace_back("observer", request);
  }
  step_boundary();
}

void Trainer::notify(const std::string& hook, const Json& kwargs) {
  if (!leader()) return;
  plugins_->notify(hook, with_rank(kwargs));
  if (observer_)
    for (auto& request : observer_(hook, kwargs)) observer_requests_.emplace_back("observer", request);
}

Json Trainer::with_rank(Json kwargs) const {
  if (ranks_) kwargs.update({{"rank", ranks_->rank()}, {"world_size", ranks_->world_size()}});
  return kwargs;
}

Json Trainer::run_kwargs() const {
  return {{"project_name", config_.project_name}, {"log_folder", run_dir_.string()}, {"data_root", data_root_}};
}

// Step hooks carry the batch's captions, token ids (as the model sees them) and shape; pixels only
// for plugins that asked.
Json Trainer::batch_summary(const Batch& batch) const {
  Json shape = batch.images.sizes().vec();
  Json summary = {{"captions", batch.captions}, {"shape", shape}};
  if (batch.tokens.defined()) {
    const torch::Tensor tokens = batch.tokens.to(torch::kCPU, torch::kInt64).contiguous();
    const auto* ids = tokens.data_ptr<std::int64_t>();
    Json rows = Json::array();
    for (std::int64_t row = 0; row < tokens.size(0); ++row)
      rows.push_back(std::vector<std::int64_t>(ids + row * tokens.size(1), ids + (row + 1) * tokens.size(1)));
    summary["tokens"] = std::move(rows);
  }
  if (plugins_->wants_tensors()) {
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(batch.images.data_ptr<float>());
    summary["image"] = {{"dtype", "float32"},
                        {"shape", shape},
                        {"data", Json::binary(std::vector<std::uint8_t>(bytes, bytes + batch.images.nbytes()))}};
  }
  return summary;
}

// plugin-report.live.json: the plugins' report so far, and where training stands, every few
// seconds and once more at the end: what the web view's plugin table shows while the run goes on.
void Trainer::write_live_report(bool at_end) {
  const auto now = std::chrono::steady_clock::now();
  if (!leader() || (!at_end && now - last_live_report_ < kLiveReportEvery)) return;
  last_live_report_ = now;
  Json report = plugins_->report();
  report["progress"] = {{"epoch", position_.epoch},
                        {"max_epochs", config_.max_epochs},
                        {"epoch_length", epoch_length_},
                        {"global_step", position_.global_step},
                        {"written_at", std::time(nullptr)}};
  try {
    write_file_atomically(run_dir_ / "plugin-report.live.json", report.dump(2) + "\n");
  } catch (const IoError& e) {  // once: a full disk would repeat it every few seconds
    if (!std::exchange(live_report_failed_, true)) log_->warn("{} (the live report is not updated)", e.what());
  }
}

void Trainer::finish_plugins() {
  plugins_->shutdown();
  try {
    write_file_atomically(run_dir_ / "plugin-report.json", plugins_->report().dump(2) + "\n");
  } catch (const IoError& e) {  // the report is worth a line, not the run's outcome
    log_->error("{}", e.what());
  }
  write_live_report(true);
  if (!plugins_->empty()) log_->info("plugins:\n{}", plugins_->report_table());
}

}  // namespace bulkhead
