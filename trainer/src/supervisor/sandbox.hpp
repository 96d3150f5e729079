// sandbox.hpp — the jail every plugin host starts in (docs/sandbox.md).
//
//   JailView view;                                   // what this plugin may see
//   view.read_only = {plugin_dir, ...};
//   auto argv = jail_command(view, identity, host_argv);   // bwrap ... -- bulkhead-plugin-host ...
//
// The outer walls are bubblewrap's (the Flatpak sandbox): new pid, mount, network, ipc, uts,
// cgroup and (for an unprivileged trainer) user namespaces, a root file system holding only the
// system's libraries, the plugin's own files read-only, a private /tmp and scratch of bounded
// size, a fresh /proc, a minimal /dev and the plugin's socket folder. The inner walls (the plugin
// user, seccomp, rlimits) are set by bulkhead-plugin-host itself (plugin-host/src/jail.hpp).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <bulkhead/plugin.hpp>

#include "supervisor/plugin_settings.hpp"

namespace bulkhead {

// train.json's "jail".
struct JailSettings {
  enum class Mode { full, weak };
  Mode mode = Mode::full;
  std::string user = "nobody";  // who plugins run as when the trainer is root

  static JailSettings from_json(const Json& jail);  // already valid against train.schema.json
};

// What a manifest asks beyond the default view ("permissions"), or what train.json grants ("grant").
struct Permissions {
  std::vector<std::filesystem::path> read, write;
  bool network = false;
  bool gpu = false;
  std::vector<std::string> env;
  // Model parameter name or glob pattern -> "read" | "write" | "grad" (docs/protocol.md, section 9).
  std::map<std::string, std::vector<std::string>> model_access;

  static Permissions from_json(const Json& permissions, const std::filesystem::path& relative_to = {});
  Json to_json() const;
  bool empty() const;
  // "read /a, write /b, network, gpu, env HF_TOKEN, model caption.words.weight read", or "none".
  std::string describe() const;
};

// Empty when `granted` holds every permission `asked`; else a message naming the plugin, its
// manifest, the config file and each permission missing, with the grant that would allow them.
std::string ungranted(const std::string& plugin, const std::filesystem::path& manifest, const Permissions& asked,
                      const Permissions& granted, const std::string& config_file);

// The plugin's identity outside its namespaces.
struct PluginIdentity {
  int uid = -1, gid = -1;  // -1: the trainer's own (an unprivileged trainer)
};
// The trainer is root: `user` (a name or a number) resolved; else the trainer's own identity.
// Throws std::runtime_error naming the user when it does not exist.
PluginIdentity plugin_identity(const JailSettings& jail);

// Where things are inside every jail.
inline const std::filesystem::path kJailSocketDir = "/run/bulkhead";
inline const std::filesystem::path kJailScratchDir = "/scratch";

// What one plugin sees. Paths are bound at the same place they have outside.
struct JailView {
  std::vector<std::filesystem::path> read_only;
  std::vector<std::filesystem::path> writable;
  std::filesystem::path socket_dir;  // bound read-only at kJailSocketDir
  std::filesystem::path workdir;     // where the plugin starts; empty: the scratch folder
  std::filesystem::path scratch;     // bound read-write at kJailScratchDir; empty: a tmpfs of tmp_mb
  int tmp_mb = PluginLimits{}.tmp_mb;  // size of /tmp (and of a tmpfs scratch folder)
  bool network = false;
  bool gpu = false;
};

// The bubblewrap command that runs `host_argv` inside the view.
std::vector<std::string> jail_command(const JailView& view, const std::vector<std::string>& host_argv);

// The environment a plugin gets: the allow-list (PATH, locale, time zone, the BLAS settings the
// runtimes need, BULKHEAD_* variables) and the granted names, read from the trainer's own.
std::vector<std::pair<std::string, std::string>> plugin_environment(const std::vector<std::string>& granted_names);

}  // namespace bulkhead
