// plugin_runner.hpp — the training loop's only door to its plugins.
//
//   bulkhead::PluginRunner plugins(config.plugins, run);   // TrainConfig::plugins, resolved once
//   plugins.call("on_epoch_start", kwargs);                // waits, each plugin up to its deadline
//   plugins.notify("on_step_end", kwargs);                 // returns at once
//   captions = plugins.transform_captions(captions);       // any thread; chained in config order
//   for (auto& request : plugins.take_control_requests()) ...
//
// Every plugin runs in its own bulkhead-plugin-host process. A plugin that
// crashes, hangs or answers nonsense never throws into the caller: the value
// passes through unchanged, the fault is counted, the host is restarted. Only
// a plugin configured with on_failure "abort" can end training, through
// abort_reason().
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <bulkhead/plugin.hpp>

#include "supervisor/model_gate.hpp"
#include "supervisor/plugin_settings.hpp"
#include "supervisor/sandbox.hpp"

namespace bulkhead {

// What the plugins learn about the run.
struct RunInfo {
  std::string project_name;
  std::filesystem::path run_dir;       // log_folder
  std::filesystem::path config_dir;    // where train.json lives ("" when none)
  std::filesystem::path scratch_dir;   // plugins' writable folder; default <run_dir>/plugin-scratch
  std::filesystem::path python;        // interpreter for Python plugins; "" = $BULKHEAD_PYTHON or /usr/bin/python3
  std::filesystem::path config_file;   // the train.json, to name in errors ("" when none)
  JailSettings jail;                   // train.json's "jail"
  // A data-parallel run's rank (bulkhead train --nproc): each rank has plugin hosts of its own.
  int rank = 0, world_size = 1;
  std::uint64_t rank_seed = 0;         // for the plugin's own randomness: differs from rank to rank

  std::string config_name() const { return config_file.empty() ? "train.json" : config_file.string(); }
  // What the welcome and the observer hooks add in a data-parallel run (nothing in a run of one process).
  Json rank_fields() const {
    if (world_size <= 1) return Json::object();
    return {{"rank", rank}, {"world_size", world_size}, {"seed", rank_seed}};
  }
};

// A validated control request from a plugin, e.g. {"action":"set_arg","name":"grad_accum","value":4}.
struct ControlRequest {
  std::string plugin;
  Json request;
};

class PluginRunner {
 public:
  // Resolves and starts every plugin and completes each handshake. Throws
  // std::runtime_error naming the entry when one cannot be found or started.
  // saved_states: what a checkpoint carried (plugin name -> state_snapshot()), for a resumed run.
  PluginRunner(std::vector<PluginSettings> plugins, RunInfo run, const Json& saved_states = Json::object());
  ~PluginRunner();  // shuts every host down (shutdown message, SIGTERM, SIGKILL)
  PluginRunner(const PluginRunner&) = delete;
  PluginRunner& operator=(const PluginRunner&) = delete;

  bool empty() const;
  // True when any plugin asked for image tensors in step hooks (manifest wants_tensors).
  bool wants_tensors() const;
  // True when every plugin that transforms samples implements transforms only: it sees nothing
  // but the items, in loader order, and keeps no state, so an epoch's items may go through it
  // before the previous epoch has ended (the trainer's loader then runs an epoch ahead).
  bool transforms_see_only_items() const;
  // Names of the plugins, in config order.
  std::vector<std::string> names() const;

  void notify(const std::string& hook, const Json& kwargs);
  void call(const std::string& hook, const Json& kwargs);
  // A call hook whose result the caller needs (a method's describe_method, suggest_trial, evaluate):
  // the first plugin that implements it answers. Nothing when none does or it failed; the fault
  // is counted, and last_fault() says what it was.
  std::optional<Json> ask(const std::string& hook, const Json& kwargs);
  // The latest fault of a hook, over all plugins ("" for none): "sent an invalid reply: ...".
  std::string last_fault(const std::string& hook) const;
  // A loader batch's captions (images) through every transform plugin in config order: one message
  // per plugin when it takes batches, else one per item (docs/protocol.md, section 3.7). Any thread.
  // A failed item passes through as it was; the others are transformed.
  std::vector<std::string> transform_captions(std::vector<std::string> captions);
  std::vector<Image> transform_pil_images(std::vector<Image> images);
  // One item: the per-item hook where the plugin has it.
  std::string transform_caption(std::string caption);
  Image transform_pil_image(Image image);

  // Restarts the named plugin now, on the user's request (bulkhead plugins restart): fresh host,
  // faults forgiven, quarantine lifted; with its state unless keep_state is false. False when no
  // plugin has that name. global_step: where training stands, for the state asked of the old host.
  bool reload(const std::string& name, bool keep_state = true, std::int64_t global_step = 0);
  // Takes the named plugin off for the rest of the run, on the user's request (bulkhead plugins
  // stop): its hosts are killed and its hooks skipped, as in a quarantine, without a fault; a
  // reload turns it back on. False when no plugin has that name.
  bool switch_off(const std::string& name, const std::string& why);

  // Plugin state (docs/protocol.md, section 10). Asks every plugin that keeps state for it; wait:
  // until each answers (a checkpoint, an epoch's end), else each reply is kept when it comes.
  void snapshot_states(std::int64_t global_step, const std::string& reason, bool wait);
  // Plugin name -> its latest good state and the step it was taken at: what a checkpoint carries.
  Json saved_states() const;

  // bulkhead train --watch-plugins: from now on, notice when a plugin's files change on disk.
  void watch_plugin_files();
  // The plugins whose files changed since the last call (none unless watched).
  std::vector<std::string> changed_plugins();

  // Model access (docs/protocol.md, section 9): the gate of each plugin whose manifest asks for it, in
  // config order, and the on_model_* hooks, sent to one plugin with what it alone may see.
  std::vector<std::pair<std::string, std::shared_ptr<ModelGate>>> model_gates() const;
  bool implements(const std::string& plugin, const std::string& hook) const;
  bool has_manifest(const std::string& plugin) const;
  // True once a host of the plugin said hello and was welcomed: its hooks are what it declared
  // (a plugin that could not start is taken to implement every hook, for the report's skips).
  bool welcomed(const std::string& plugin) const;
  std::optional<Json> call_plugin(const std::string& plugin, const std::string& hook, const Json& kwargs);
  void notify_plugin(const std::string& plugin, const std::string& hook, const Json& kwargs);

  std::vector<ControlRequest> take_control_requests();
  // Set when a plugin with on_failure "abort" failed: names the plugin and the fault.
  std::optional<std::string> abort_reason() const;

  // Per plugin and hook: calls, latency p50/p99, timeouts, crashes, invalid replies, restarts, quarantine.
  Json report() const;
  // The report as a table a person reads at a glance.
  std::string report_table() const;

  void shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulkhead
