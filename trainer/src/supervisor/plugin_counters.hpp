// plugin_counters.hpp — what one supervised plugin has done, for its report: per hook, calls,
// outcomes and latencies; for the plugin, restarts, reloads, protocol errors and the latest fault.
//
// Not locked: SupervisedPlugin keeps one under its own mutex.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "supervisor/connection.hpp"

namespace bulkhead {

struct HookCounters {
  long calls = 0, ok = 0, errors = 0, timeouts = 0, crashes = 0, invalid = 0;
  long lost = 0;  // sent, but the host died serving an earlier request (that one's crash)
  long skipped = 0;  // not sent: the plugin was restarting, backing off or quarantined
  // A batched hook's: items in its answered batches, those of them refused, and items of batches
  // skipped (no host to send them to), which passed through untouched.
  long items = 0, items_failed = 0, items_skipped = 0;
  std::vector<float> latencies_ms;
  std::string last_fault;
};

class PluginCounters {
 public:
  // A call sent, or skipped when there was no host to send it to.
  void count_call(const std::string& hook, bool sent);
  // A reply that passed every check, and how long it took.
  void count_ok(const std::string& hook, double latency_ms);
  // A reply, or a start ("(start)") or a death between calls ("(idle)"), that failed this way.
  void count_failure(const std::string& hook, Reply::Status status);
  void count_lost(const std::string& hook);
  // A batched hook's answered batch of `items`, of which `failed` were refused (and passed through).
  void count_items(const std::string& hook, long items, long failed);
  // A batched hook's skipped batch of `items`.
  void count_skipped_items(const std::string& hook, long items) { hooks_[hook].items_skipped += items; }
  // The latest fault, of the hook and of the plugin.
  void note_fault(const std::string& hook, const std::string& what);
  std::string last_fault(const std::string& hook) const {
    auto found = hooks_.find(hook);
    return found == hooks_.end() ? "" : found->second.last_fault;
  }
  // Each returns the new count, for the log line.
  long count_restart() { return ++restarts_; }
  long count_reload() { return ++reloads_; }
  // A call that waited for a restart's backoff to pass instead of being skipped.
  void count_backoff_wait() { ++backoff_waits_; }
  // Something the plugin sent that the protocol does not allow; the first few are kept.
  void protocol_problem(const std::string& what);
  const std::vector<std::string>& protocol_problems() const { return protocol_problems_; }

  // {"hooks": {hook: {calls, ..., p50_ms, p99_ms, last_fault}}, "restarts", "reloads",
  //  "last_fault", "protocol_errors"}: the counters' part of SupervisedPlugin::report().
  Json report() const;

 private:
  std::map<std::string, HookCounters> hooks_;
  long restarts_ = 0;
  long reloads_ = 0;
  long backoff_waits_ = 0;
  long protocol_errors_ = 0;
  std::vector<std::string> protocol_problems_;
  std::string last_fault_;  // "hook what", the latest fault of any hook
};

}  // namespace bulkhead
