// supervised_plugin.hpp — one plugin under supervision: its host process, its connection,
// deadlines, reply validation and restarts. Its parts: the hello and welcome (handshake.hpp),
// when it may restart and when it is quarantined (fault_policy.hpp), what it has done (plugin_counters.hpp).
//
// invoke() never throws and never hangs past the hook's deadline: it returns the plugin's
// result, or nothing when the plugin failed or is being restarted (the caller then passes the
// value through). Restarts run in the background; a call waits for one at most its deadline.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "supervisor/connection.hpp"
#include "supervisor/fault_policy.hpp"
#include "supervisor/host_process.hpp"
#include "supervisor/manifest.hpp"
#include "supervisor/model_gate.hpp"
#include "supervisor/plugin_counters.hpp"
#include "supervisor/plugin_runner.hpp"
#include "supervisor/transform_hooks.hpp"

namespace bulkhead {

class SupervisedPlugin {
 public:
  using ControlSink = std::function<void(const std::string& plugin, const Json& request)>;
  using AbortSink = std::function<void(const std::string& reason)>;

  SupervisedPlugin(Manifest manifest, PluginSettings settings, RunInfo run, std::filesystem::path runtime_dir,
                   ControlSink control, AbortSink abort);
  ~SupervisedPlugin();

  // The first start. A plugin that cannot load, or speaks another protocol version, throws
  // std::runtime_error naming the entry: restarting cannot help, so training must not begin.
  // Any other failure (a crash or no hello in time) is a fault like any later one: under
  // on_failure "abort" it throws too; under "skip" it is counted and the plugin is started again,
  // after its backoff, when a hook next needs it.
  void launch();
  // Starts the host and completes the handshake; throws std::runtime_error naming the entry on any
  // failure (what `plugins check` wants: no second chances). A start whose host connected with
  // the other security mechanism (protocol 1 or 2, docs/protocol.md, Versions) is made once
  // more, the other way; `mechanism_switched` says this one is that second try.
  void start(bool mechanism_switched = false);
  // The protocol version its latest hello agreed on; 0 before one.
  int protocol() const;
  // Shutdown message, then SIGTERM after 2 s, then SIGKILL after 5 s. Returns what was wrong with
  // how the host ended (not exit status 0, or not within 2 s), or empty.
  std::string stop();
  // On the user's request (its code changed): the host is killed and started afresh when a hook
  // next needs it, with its faults forgiven, its backoff reset and its quarantine lifted. With
  // keep_state, the running host is asked for its state first and the new one starts from it.
  void reload(bool keep_state = true, std::int64_t global_step = 0);
  // On the user's request: the host is killed and the plugin is off for the rest of the run, as
  // in a quarantine (its hooks are skipped), with no fault counted and no abort; reload() turns
  // it back on.
  void switch_off(const std::string& why);

  const std::string& name() const { return manifest_.name; }
  // False for an entry that is a class path (its train.json entry is its only declaration).
  bool has_manifest() const { return !manifest_.path.empty(); }
  const Manifest& manifest() const { return manifest_; }
  bool implements(const std::string& hook) const;
  // Its door to the model: null unless its manifest asks for model_access (granted, or it would not exist).
  const std::shared_ptr<ModelGate>& model_gate() const { return gate_; }
  const std::vector<std::string>& hooks() const { return hooks_; }

  // Calls a hook and waits. Its params are handed on, not copied (an image's pixels).
  std::optional<Json> invoke(const std::string& hook, Json params);
  // A transform over a batch of values (docs/protocol.md, section 3.7): one message when the plugin
  // takes batches, else one per item. out[i] is item i's replacement, or nothing when that item
  // failed (it then passes through). A batch that fails whole (a crash, a hang, an error, a reply of
  // the wrong length) is retried item by item, so only the item that caused it is lost.
  std::vector<std::optional<Json>> transform(const TransformHooks& hooks, const std::vector<Json>& items);
  // Sends a hook without waiting; its reply (and any control in it) is handled when it comes,
  // and a valid one handed to on_result, on the connection's thread.
  void send(const std::string& hook, const Json& params, std::function<void(const Json&)> on_result = {});

  // Plugin state (docs/protocol.md, section 10): true when it implements get_state and set_state
  // and train.json keeps its state.
  bool keeps_state() const;
  // Asks the host for its state (params: get_state's); wait: up to the hook's deadline, else the
  // reply is kept when it comes. A failure is a fault of get_state; the last good state stays.
  void snapshot_state(const Json& params, bool wait);
  // {"state", "global_step"} of the latest good state, or null.
  Json state_snapshot() const;
  // Before the first start of a resumed run: the snapshot its checkpoint carried.
  void restore_from(const Json& snapshot);

  // What plugin-report.json holds of it. Its "status": running, restarting (its host is being
  // started again, or waits for its backoff or for the next hook), quarantined, stopped (by the
  // user), ended (the run is over).
  Json report() const;

  // For `plugins check`: one request to the running host, its reply returned unjudged (nothing
  // counted, no fault), to test answers that training relies on but never asks for.
  Reply probe(const std::string& method, const Json& params);
  // Names in the latest hello's hooks that are not in the catalogue (ignored, so never called).
  std::vector<std::string> unknown_hooks() const;
  // What the plugin sent that the protocol does not allow (rejected control requests, messages
  // that answer nothing), the first few.
  std::vector<std::string> protocol_problems() const;

 private:
  struct Generation;
  // What a generation's connection tells the supervisor (logs, control, the host's death).
  ConnectionEvents connection_events(Generation& generation);
  // Makes the generation's connection and host: a child process here (credentials: plain), or a
  // host that its server on another machine starts (docs/protocol.md, Remote hosts).
  void open_local(Generation& generation, const std::string& token, ConnectionEvents events, bool plain);
  void open_remote(Generation& generation, const std::string& token, ConnectionEvents events);
  // The running generation, or null. A dead one is restarted in the background once its backoff
  // has passed; the caller waits for that restart up to `wait`, of which at most `backoff_wait`
  // for the backoff.
  std::shared_ptr<Generation> ready_generation(std::chrono::milliseconds wait, std::chrono::milliseconds backoff_wait);
  std::shared_ptr<Generation> ready_generation(std::chrono::milliseconds wait) { return ready_generation(wait, wait); }
  std::shared_ptr<Generation> restart();
  // A reply and the generation that sent it.
  struct Exchange {
    Reply reply;
    int generation = 0;
    std::optional<int> image_slot;  // the image region's slot lent with the request
  };
  // Waits for a host (up to `limit`, restarts included; up to `backoff_wait` of it for a backoff),
  // sends, waits for the reply in what is left of `limit`. Nothing when there is no host to send
  // to (the call is counted skipped).
  std::optional<Exchange> exchange(const std::string& hook, Json params, std::chrono::milliseconds limit,
                                   std::chrono::milliseconds backoff_wait);
  // Judges an exchange's reply (conclude below), its images taken out of the slot it lent, which
  // is then given back.
  std::optional<Json> conclude(const std::string& hook, Json sent, Exchange answer);
  // The batch in one message; nothing when it failed whole and must be retried item by item.
  std::optional<std::vector<std::optional<Json>>> transform_batch(const TransformHooks& hooks, const std::vector<Json>& items);
  // Each item in a message of its own: the per-item hook, or a batch of one for a plugin without it.
  std::vector<std::optional<Json>> transform_each(const TransformHooks& hooks, const std::vector<Json>& items);
  // True while the plugin is sent batches: it lists the batched hook and has not refused one.
  bool takes_batches(const TransformHooks& hooks) const;
  void start_failed(const std::exception& e);
  // A failed batch whose items all passed on their own: its fault, not yet counted (fault()), counts.
  void count_batch_fault(const std::string& batch_hook);
  // Hands a new host the latest state before any hook; false when it refused it (the state is
  // then dropped, so that the next host starts empty).
  bool restore_state(Generation& generation, const std::vector<std::string>& hooks);
  void keep_state(const Json& result, std::int64_t global_step);
  void retire(std::shared_ptr<Generation> generation);
  void release_retired();  // lets the killed generations go, outside the lock
  // Counts a call as sent, or as skipped when there was no generation to send it to; returns sent.
  bool count_call(const std::string& hook, bool sent);
  // Counts a failure of a hook (or of "(start)", "(idle)") under the lock.
  void count_failure(const std::string& hook, Reply::Status status);
  std::chrono::milliseconds deadline(const std::string& hook) const;
  // The plugin's writable folder, <run>/plugin-scratch/<name>, made and handed to its user; it
  // outlives restarts. scratch_dir() is where the plugin sees it (/scratch in the full jail).
  std::filesystem::path scratch_folder(const PluginIdentity& identity) const;
  std::filesystem::path scratch_dir() const;
  // The plugin's on_failure, or else the hook's default from schemas/hooks.json.
  bool aborts_on(const std::string& hook) const;
  // Validates an ok reply; returns the reason it is invalid, or empty.
  std::string check_reply(const std::string& hook, const Json& params, const Json& result);
  // What went wrong with a reply that is not ok, in words ("missed its deadline of 300 ms: ...").
  std::string describe_failure(const std::string& hook, const Reply& reply) const;
  // `params`: what was sent, its large bins left out (check_reply needs only their shapes).
  std::optional<Json> conclude(const std::string& hook, const Json& params, Reply reply, int generation);
  // A region slot lent with a request is the trainer's again once the request is answered or failed.
  void release_slot(std::optional<int> slot);
  // Pixels in shared memory (docs/protocol.md, section 2.2): a request's images go into a slot of
  // the host's image region when it maps one and a slot is free (else they travel in the message);
  // returns the slot lent.
  std::optional<int> place_images(const Generation& generation, Json& params);
  // The reply's images that lie in the region are copied out of the slot lent with the request,
  // once, before anything looks at them: what is checked is what is trained on, whatever the plugin
  // writes there later. Returns why the reply is invalid, or empty.
  std::string take_images(const std::string& hook, const Json& sent, Json& result);
  void fault(const std::string& hook, const std::string& what, int generation, bool restart);
  void quarantine(const std::string& hook, const std::string& why);
  void handle_control(const Json& requests);
  void protocol_problem(const std::string& what);
  const char* status() const;  // report()'s "status"

  Manifest manifest_;
  PluginSettings settings_;
  RunInfo run_;
  std::filesystem::path runtime_dir_;
  ControlSink control_;
  AbortSink abort_;
  std::shared_ptr<spdlog::logger> log_;

  mutable std::mutex mutex_;
  std::shared_ptr<Generation> current_;
  std::vector<std::shared_ptr<Generation>> retired_;  // killed, released by ready_generation
  int generation_ = 0;
  std::vector<std::string> hooks_;
  FaultPolicy policy_;                      // backoff, the window of recent faults, quarantine
  bool switched_off_ = false;               // its quarantine is the user's switch_off, not its faults'
  bool shut_down_ = false;                  // stop() ran: the run is over
  bool starting_ = false;                   // a restart is under way in restart_task_
  std::shared_future<void> restart_task_;   // the latest background restart
  PluginCounters counters_;
  std::vector<std::string> unknown_hooks_;
  // Its hosts connect with PLAIN credentials (protocol 2 on); false once one connected without
  // them on its jailed socket (protocol 1): later starts take it so, until one brings them again.
  std::atomic<bool> plain_{true};
  int protocol_ = 0;  // the version its latest hello and the trainer agreed on
  std::optional<RemoteLink> link_;  // its remote host's server, keys read; unset for a local host
  Json remote_ = Json::object();    // a remote host's endpoint, runtime and version, for the report
  std::string last_log_error_;
  Permissions granted_;  // what train.json grants it (a superset of what its manifest asks)

  struct StateSnapshot {
    Json state;
    std::int64_t global_step = 0;
  };
  std::optional<StateSnapshot> state_;  // the latest good get_state, handed to each new host
  long state_restores_ = 0;             // new hosts that took it
  long state_refusals_ = 0;             // new hosts that refused it and were replaced by empty ones
  std::string state_problem_;           // why the latest refusal
  std::shared_ptr<ModelGate> gate_;
  std::set<std::string> batches_refused_;  // batched hooks it answered unknown_method: items go one by one
  std::shared_ptr<SharedRegion> images_;  // its image hooks' region, or null
  long image_requests_in_region_ = 0, image_requests_inline_ = 0;
};

}  // namespace bulkhead
