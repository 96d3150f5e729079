// bulkhead/serve.hpp — the plugin side of a connection: hello, then hooks as Plugin calls, until shutdown.
//
//   bulkhead::PluginMeta meta{"shout", "1.0.0", "Adds an exclamation mark", {"transform_caption"}};
//   return bulkhead::serve(plugin, meta, bulkhead::ServeOptions::from_environment());
#pragma once

#include <string>
#include <vector>

#include <bulkhead/plugin.hpp>

namespace bulkhead {

struct PluginMeta {
  std::string name;
  std::string version;
  std::string description;
  std::vector<std::string> hooks;  // the hooks the plugin implements, announced in hello
};

struct ServeOptions {
  std::string endpoint;  // BULKHEAD_ENDPOINT
  std::string token;     // BULKHEAD_TOKEN
  int parent_pid = 0;    // BULKHEAD_PARENT_PID: serving stops when that process is gone
  // Reads the BULKHEAD_* variables; throws std::runtime_error naming a missing one.
  static ServeOptions from_environment();
};

// Serves until the trainer says shutdown (returns 0), refuses the hello (returns 1),
// or disappears (returns 0). Exceptions from hooks become error replies.
int serve(Plugin& plugin, const PluginMeta& meta, const ServeOptions& options);

}  // namespace bulkhead
