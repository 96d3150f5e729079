#include "supervisor/plugin_counters.hpp"

#include <algorithm>

#include "supervisor/transform_hooks.hpp"

namespace bulkhead {
namespace {

constexpr std::size_t kProblemsKept = 20;         // protocol problems kept for `plugins check` to show
constexpr std::size_t kLatenciesKept = 1000000;  // per hook: enough for the percentiles, bounded

Json text_or_null(const std::string& text) { return text.empty() ? Json(nullptr) : Json(text); }

Json hook_report(const std::string& hook, const HookCounters& c) {
  std::vector<float> sorted = c.latencies_ms;
  std::sort(sorted.begin(), sorted.end());
  auto percentile = [&](double p) -> Json {
    if (sorted.empty()) return nullptr;
    return sorted[std::min(sorted.size() - 1, std::size_t(p * double(sorted.size())))];
  };
  Json report = {{"calls", c.calls},       {"skipped", c.skipped}, {"ok", c.ok},  {"errors", c.errors},
          {"timeouts", c.timeouts}, {"crashes", c.crashes}, {"lost", c.lost}, {"invalid_replies", c.invalid},
          {"p50_ms", percentile(0.50)}, {"p99_ms", percentile(0.99)},
          {"last_fault", text_or_null(c.last_fault)}};
  if (TransformHooks::is_batch_hook(hook))
    report.update({{"items", c.items}, {"items_failed", c.items_failed}, {"items_skipped", c.items_skipped}});
  return report;
}

}  // namespace

void PluginCounters::count_call(const std::string& hook, bool sent) {
  ++(sent ? hooks_[hook].calls : hooks_[hook].skipped);
}

void PluginCounters::count_ok(const std::string& hook, double latency_ms) {
  auto& counters = hooks_[hook];
  ++counters.ok;
  if (counters.latencies_ms.size() < kLatenciesKept) counters.latencies_ms.push_back(float(latency_ms));
}

void PluginCounters::count_failure(const std::string& hook, Reply::Status status) {
  auto& counters = hooks_[hook];
  switch (status) {
    case Reply::Status::ok: break;
    case Reply::Status::error: ++counters.errors; break;
    case Reply::Status::timeout: ++counters.timeouts; break;
    case Reply::Status::invalid: ++counters.invalid; break;
    case Reply::Status::disconnected: ++counters.crashes; break;
  }
}

void PluginCounters::count_lost(const std::string& hook) { ++hooks_[hook].lost; }

void PluginCounters::count_items(const std::string& hook, long items, long failed) {
  hooks_[hook].items += items;
  hooks_[hook].items_failed += failed;
}

void PluginCounters::note_fault(const std::string& hook, const std::string& what) {
  hooks_[hook].last_fault = what;
  last_fault_ = hook + " " + what;
}

void PluginCounters::protocol_problem(const std::string& what) {
  ++protocol_errors_;
  if (protocol_problems_.size() < kProblemsKept) protocol_problems_.push_back(what);
}

Json PluginCounters::report() const {
  Json hooks = Json::object();
  for (const auto& [hook, counters] : hooks_) hooks[hook] = hook_report(hook, counters);
  return {{"restarts", restarts_},
          {"reloads", reloads_},
          {"backoff_waits", backoff_waits_},
          {"last_fault", text_or_null(last_fault_)},
          {"protocol_errors", protocol_errors_},
          {"hooks", hooks}};
}

}  // namespace bulkhead
