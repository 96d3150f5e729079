// host_argv.cpp — a plugin host's command line and its jail's view (host_argv.hpp).
#include "supervisor/host_argv.hpp"

#include <utility>

#include "common/paths.hpp"

namespace bulkhead {
namespace fs = std::filesystem;
namespace {

// An EveryDream2 class path (plugins.example_plugin.ExampleLoggingPlugin) names no folder: its
// module's top folder (plugins/) or file is found on the search path, as the Python host will.
std::pair<fs::path, fs::path> class_path_module(const std::string& entry, const std::vector<fs::path>& roots) {
  const std::string top = entry.substr(0, entry.find('.'));
  for (const auto& root : roots)
    for (const auto& candidate : {root / top, root / (top + ".py")})
      if (fs::exists(candidate)) return {root, candidate};
  return {};
}

}  // namespace

std::string join_paths(const std::vector<fs::path>& paths) {
  std::string text;
  for (const auto& path : paths) text += (text.empty() ? "" : ":") + path.string();
  return text;
}

// The warden counts the whole tree everywhere, and a cgroup too where there is one: RLIMIT_NPROC
// is only a backstop, set above their limit, so that theirs is the one hit and reported.
std::vector<std::string> host_arguments(const HostLaunch& launch, bool jailed) {
  const auto& m = launch.manifest;
  const auto& l = launch.limits;
  const int processes = 2 * l.processes + 16;
  std::vector<std::string> argv = {paths::plugin_host().string(), "--runtime", m.runtime, "--entry", m.resolved_entry(),
                                   "--plugin-dir", m.dir.string(),
                                   "--limit-address-space-mb", std::to_string(l.address_space_mb),
                                   "--limit-cpu-s", std::to_string(l.cpu_time_s),
                                   "--limit-open-files", std::to_string(l.open_files),
                                   "--limit-processes", std::to_string(processes),
                                   "--tree-memory-mb", std::to_string(l.memory_mb),
                                   "--tree-cpu-s", std::to_string(l.cpu_time_s),
                                   "--tree-processes", std::to_string(l.processes)};
  if (jailed && launch.identity.uid >= 0)
    argv.insert(argv.end(), {"--plugin-uid", std::to_string(launch.identity.uid), "--plugin-gid", std::to_string(launch.identity.gid)});
  if (launch.granted.network) argv.insert(argv.end(), {"--network", "1"});
  // In the full jail /tmp is the plugin's own; in the weak one it is the machine's, and the
  // plugin gets its scratch folder as TMPDIR instead.
  std::vector<fs::path> writable = launch.granted.write;
  writable.push_back(launch.scratch_dir);
  if (jailed) writable.push_back("/tmp");
  argv.insert(argv.end(), {"--writable", join_paths(writable)});
  return argv;
}

// What the plugin sees besides the system: its own files, its runtime's SDK, the host, and what
// train.json granted. Bulkhead's install, the run folder, the data and other plugins stay outside.
JailView jail_view(const HostLaunch& launch) {
  const auto& m = launch.manifest;
  const fs::path home = paths::home();
  JailView view;
  view.socket_dir = launch.socket_dir;
  view.scratch = launch.scratch_source;
  view.tmp_mb = launch.limits.tmp_mb;
  view.network = launch.granted.network;
  view.gpu = launch.granted.gpu;
  view.read_only = {paths::plugin_host(), home / "schemas"};
  if (!m.dir.empty()) view.read_only.push_back(m.dir);
  // The file the manifest names as its entry may sit elsewhere (a C++ library in build/lib, a
  // script shared by several manifests): it is the plugin's own, and it is visible.
  if ((m.runtime == "cpp" || m.runtime == "exec") && !m.dir.empty()) {
    const fs::path entry = fs::weakly_canonical(m.runtime == "exec" && fs::path(m.entry).is_relative() ? m.dir / m.entry : fs::path(m.resolved_entry()));
    if (entry.parent_path() != fs::weakly_canonical(m.dir)) view.read_only.push_back(entry);
  }
  if (m.runtime == "python") {
    view.read_only.insert(view.read_only.end(), {home / "plugin-sdk" / "python", home / "plugins" / "plugins.py", home / "plugins" / "__init__.py"});
    if (m.dir.empty()) {
      auto [root, module] = class_path_module(m.entry, launch.search_path);
      if (!module.empty()) view.read_only.push_back(module);
      view.workdir = root;  // EveryDream2 runs its plugins from the folder of its train.json
    }
    // An interpreter named by train.json's "python" may live outside /usr: in a virtual
    // environment (bin/python: the whole environment), or on its own.
    const fs::path python = launch.python.empty() ? fs::path("/usr/bin/python3") : launch.python;
    if (python.parent_path().filename() == "bin" && python.parent_path().parent_path() != "/usr")
      view.read_only.push_back(python.parent_path().parent_path());
    else if (python.string().rfind("/usr/", 0) != 0)
      view.read_only.push_back(python);
  }
  if (m.runtime == "node") view.read_only.push_back(home / "plugin-sdk" / "node");
  view.read_only.insert(view.read_only.end(), launch.granted.read.begin(), launch.granted.read.end());
  view.writable = launch.granted.write;
  return view;
}

}  // namespace bulkhead
