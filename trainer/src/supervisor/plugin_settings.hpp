// plugin_settings.hpp — one entry of train.json's plugins list, resolved: every setting present.
//
//   auto settings = bulkhead::plugin_settings_from_config(config["plugins"]);
//
// The defaults are schemas/plugin-entry.schema.json's "default"s: the parser fills them in from
// there and restates none. The initializers below serve settings built in code (`plugins check`,
// a study's method, tests); tests/protocol/plugin_settings_test.cpp holds them equal to the schema's.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bulkhead {

using Json = nlohmann::json;

// Resource limits of one plugin host (plugin-entry.schema.json, "limits").
struct PluginLimits {
  int address_space_mb = 4096;  // per process (RLIMIT_AS)
  int memory_mb = 2048;         // the whole process tree (the warden's count, and a cgroup where there is one)
  int cpu_time_s = 3600;        // per process, and for the whole tree (the warden's count, and a cgroup)
  int open_files = 256;
  int processes = 128;          // processes and threads of the whole tree
  int tmp_mb = 256;             // size of the jail's /tmp
  int scratch_mb = 1024;        // what its scratch folder (<run>/plugin-scratch/<name>) may hold
  int max_message_mb = 64;
  int max_state_mb = 16;        // what get_state's state may weigh, encoded
  int max_caption_bytes = 4096;
  double max_update_norm = 10;          // model_access: largest L2 norm of a row of an update
  int max_update_staleness_steps = 8;   // model_access: how old the data an update is based on may be
  int model_region_slots = 2;           // model_access: slots of its shared-memory region
  int model_region_slot_mb = 4;
  int image_region_slots = 4;           // image hooks: slots of its image region (0: none)
  int image_region_slot_mb = 16;
};

// A plugin host on another machine (docs/protocol.md, Remote hosts), as the entry names it.
struct RemoteSettings {
  std::string endpoint;    // tcp://HOST:PORT
  std::string server_key;  // Z85 or a .pub file, relative to train.json's folder
  std::string client_key;  // a .key file, relative to train.json's folder
  bool insecure = false;   // plain TCP: no keys
};

// One entry of train.json's plugins list, with every default filled in.
struct PluginSettings {
  std::string entry;                   // as written: a name, a folder, a plugin.json, or an EveryDream2 class path
  Json options = Json::object();
  // on_failure: "abort" (true) or "skip" (false); unset, each hook's own default from schemas/hooks.json.
  std::optional<bool> abort_on_failure;
  std::optional<int> timeout_ms;       // overrides every hook's catalogue deadline
  int max_restarts = 5;                // faults tolerated within restart_window_s before quarantine
  double restart_window_s = 60;
  int restart_backoff_ms = 100;        // delay before the first restart; doubles per fault up to 10 s
  bool keep_state = true;              // hand its latest state (get_state) to each new host (set_state)
  int pool = 1;                        // hosts serving its transforms side by side (transform-only plugins)
  PluginLimits limits;
  Json grant = Json::object();         // permissions train.json grants (paths relative to its folder)
  bool method = false;                 // train.json's method, not its plugins: the manifest must provide "method"
  std::optional<RemoteSettings> remote;  // its host runs on another machine
};

// One entry (already valid against plugin-entry.schema.json, or a method entry of train.schema.json):
// a bare name, or an object whose missing settings take the schema's defaults.
PluginSettings plugin_settings_from_entry(const Json& entry);
// Parses train.json's "plugins" array, entry by entry.
std::vector<PluginSettings> plugin_settings_from_config(const Json& plugins);

}  // namespace bulkhead
