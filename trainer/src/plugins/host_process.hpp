// host_process.hpp — one running bulkhead-plugin-host: started with Boost.Process in its own
// process group, its stdout and stderr logged line by line under the plugin's name.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "plugins/manifest.hpp"
#include "plugins/plugin_runner.hpp"

namespace bulkhead {

struct HostLaunch {
  Manifest manifest;
  PluginLimits limits;
  std::string endpoint;
  std::string token;
  std::filesystem::path scratch_dir;
  std::string search_path;  // BULKHEAD_SEARCH_PATH for EveryDream2 class paths
  std::filesystem::path python;  // BULKHEAD_PYTHON when set (train.json's "python")
};

class HostProcess {
 public:
  explicit HostProcess(const HostLaunch& launch);
  ~HostProcess();  // kills the group if still running, and reaps it

  int pid() const;
  bool running();
  // "exit status 3", "killed by signal 11 (Segmentation fault)"; empty while running.
  std::string exit_description();
  std::optional<int> exit_status();
  // The last line the plugin printed on stderr (load failures explain themselves there).
  std::string last_error_line() const;

  // Shutdown's last steps: SIGTERM to the group, then SIGKILL after grace.
  void terminate(std::chrono::milliseconds grace);
  void kill_group();
  bool wait_for_exit(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulkhead
