// supervised_plugin.hpp — one plugin under supervision: its host process, its connection,
// deadlines, reply validation, restarts with backoff, quarantine, and its counters.
//
// invoke() never throws and never hangs past the hook's deadline: it returns the plugin's
// result, or nothing when the plugin failed (the caller then passes the value through).
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "plugins/connection.hpp"
#include "plugins/host_process.hpp"
#include "plugins/manifest.hpp"
#include "plugins/plugin_runner.hpp"

namespace bulkhead {

struct HookCounters {
  long calls = 0, ok = 0, errors = 0, timeouts = 0, crashes = 0, invalid = 0;
  std::vector<float> latencies_ms;
  std::string last_fault;
};

class SupervisedPlugin {
 public:
  using ControlSink = std::function<void(const std::string& plugin, const Json& request)>;
  using AbortSink = std::function<void(const std::string& reason)>;

  SupervisedPlugin(Manifest manifest, PluginSettings settings, RunInfo run, std::filesystem::path runtime_dir,
                   ControlSink control, AbortSink abort);
  ~SupervisedPlugin();

  // Starts the host and completes the handshake. Throws std::runtime_error naming the entry on failure.
  void start();
  // Shutdown message, then SIGTERM after 2 s, then SIGKILL after 5 s.
  void stop();

  const std::string& name() const { return manifest_.name; }
  const Manifest& manifest() const { return manifest_; }
  bool implements(const std::string& hook) const;
  const std::vector<std::string>& hooks() const { return hooks_; }

  // Calls a hook and waits. `input` is what a transform sent, for the semantic checks.
  std::optional<Json> invoke(const std::string& hook, const Json& params);
  // Sends a notify hook; its acknowledgement (and any control in it) is handled when it comes.
  void send(const std::string& hook, const Json& params);

  Json report() const;

 private:
  struct Generation;
  std::shared_ptr<Generation> ready_generation(bool wait = true);
  std::shared_ptr<Generation> restart();
  std::chrono::milliseconds deadline(const std::string& hook) const;
  // Validates an ok reply; returns the reason it is invalid, or empty.
  std::string check_reply(const std::string& hook, const Json& params, const Json& result);
  std::optional<Json> conclude(const std::string& hook, const Json& params, const Reply& reply, int generation);
  void fault(const std::string& hook, const std::string& what, int generation, bool restart);
  void quarantine(const std::string& hook, const std::string& why);
  void handle_control(const Json& requests);

  Manifest manifest_;
  PluginSettings settings_;
  RunInfo run_;
  std::filesystem::path runtime_dir_;
  ControlSink control_;
  AbortSink abort_;
  std::shared_ptr<spdlog::logger> log_;

  mutable std::mutex mutex_;
  std::shared_ptr<Generation> current_;
  int generation_ = 0;
  std::vector<std::string> hooks_;
  std::chrono::steady_clock::time_point next_start_{};
  std::chrono::milliseconds backoff_{100};  // the next restart's delay (settings_.restart_backoff_ms, doubling)
  bool starting_ = false;                   // one thread restarts; the others skip meanwhile
  std::future<void> restart_task_;          // a restart started by a notify hook, in the background
  std::deque<std::chrono::steady_clock::time_point> recent_faults_;
  bool quarantined_ = false;
  std::string quarantine_reason_;
  long restarts_ = 0;
  long protocol_errors_ = 0;
  std::string last_log_error_;
  std::map<std::string, HookCounters> counters_;
};

}  // namespace bulkhead
