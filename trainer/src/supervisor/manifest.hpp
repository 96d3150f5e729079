// manifest.hpp — finding plugins: manifests (plugin.json), the plugin folders, and train.json entries.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <bulkhead/plugin.hpp>

#include "supervisor/sandbox.hpp"

namespace bulkhead {

// The runtime of a plugin whose host runs on another machine: its manifest is there.
inline constexpr const char* kRemoteRuntime = "remote";

struct Manifest {
  std::string name;
  std::string version;
  std::string description;
  std::string runtime;  // cpp | python | node | exec (| remote)
  std::string entry;    // cpp: a library file; python: module.Class; node: a .js file; exec: an executable
  std::vector<std::string> hooks;
  Json options = Json::object();
  bool resizes_images = false;
  bool wants_tensors = false;
  std::string provides = "hooks";  // hooks | method (a fine-tuning method: docs/methods.md)
  Permissions permissions;     // what it asks beyond the default view; train.json must grant each
  std::filesystem::path dir;   // the plugin's folder; empty for an EveryDream2 class path
  std::filesystem::path path;  // the plugin.json; empty for an EveryDream2 class path

  // The entry as the host takes it: cpp libraries are looked up beside the manifest, then in build/lib.
  std::string resolved_entry() const;
};

// Reads and validates a plugin.json. Throws std::runtime_error naming the file, the field and the rule.
Manifest load_manifest(const std::filesystem::path& path);

// A manifest that could not be read, by path and reason.
struct ManifestProblem {
  std::filesystem::path path;
  std::string reason;
};

// Every plugin folder Bulkhead can see: bundled plugins/, --plugins-dir, $BULKHEAD_PLUGINS_PATH.
class PluginCatalog {
 public:
  // extra_dirs are searched after the bundled folder, in order.
  explicit PluginCatalog(std::vector<std::filesystem::path> extra_dirs = {});

  const std::vector<Manifest>& plugins() const { return plugins_; }
  const std::vector<ManifestProblem>& problems() const { return problems_; }
  // Two plugins with one name: the name and both paths, one line each.
  const std::vector<std::string>& conflicts() const { return conflicts_; }

  // A train.json entry: a plugin name, a folder or plugin.json (relative to base_dir, then the
  // working directory), or an EveryDream2 class path (plugins.example_plugin.ExampleLoggingPlugin).
  // Throws std::runtime_error naming the entry and what was tried.
  Manifest resolve(const std::string& entry, const std::filesystem::path& base_dir = {}) const;

 private:
  void scan(const std::filesystem::path& dir);

  std::vector<Manifest> plugins_;
  std::vector<ManifestProblem> problems_;
  std::vector<std::string> conflicts_;
};

// The folders PluginCatalog searches after the bundled one: extra, then $BULKHEAD_PLUGINS_PATH.
std::vector<std::filesystem::path> plugin_dirs_from_environment(const std::vector<std::filesystem::path>& extra = {});

}  // namespace bulkhead
