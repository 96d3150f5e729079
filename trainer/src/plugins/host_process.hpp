// host_process.hpp — one running bulkhead-plugin-host: started with Boost.Process in its own
// process group, inside its jail (sandbox.hpp) and resource group (resource_group.hpp), its
// stdout and stderr logged line by line under the plugin's name.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "plugins/manifest.hpp"
#include "plugins/plugin_runner.hpp"
#include "plugins/sandbox.hpp"
#include "plugins/shared_region.hpp"

namespace bulkhead {

struct HostLaunch {
  Manifest manifest;
  PluginLimits limits;
  std::string endpoint;             // as the host sees it
  std::string token;
  std::filesystem::path scratch_dir;  // as the host sees it
  std::vector<std::filesystem::path> search_path;  // BULKHEAD_SEARCH_PATH for EveryDream2 class paths
  std::filesystem::path python;     // BULKHEAD_PYTHON when set (train.json's "python")
  JailSettings jail;
  PluginIdentity identity;          // who the plugin runs as (full jail, root trainer)
  Permissions granted;              // what the manifest asked and train.json granted
  std::filesystem::path socket_dir;  // outside the jail; bound at kJailSocketDir inside
  std::string group_name;           // its resource group's name, unique in this trainer
  std::filesystem::path scratch_source;  // the scratch folder outside (seen at scratch_dir); empty: a tmpfs
  // The sealed shared-memory regions the host inherits, or null: model_access's
  // (BULKHEAD_MODEL_REGION) and its image hooks' (BULKHEAD_IMAGE_REGION).
  std::shared_ptr<SharedRegion> model_region, image_region;
  int serving_word = -1;  // BULKHEAD_SERVING's memfd (wire.hpp), or -1
};

class HostProcess {
 public:
  explicit HostProcess(const HostLaunch& launch);
  ~HostProcess();  // kills the group if still running, and reaps it

  // Whether the full jail can be built on this machine, tried once per process by jailing the
  // real host around /bin/true: empty when it can, else why not, naming the missing feature and
  // the train.json setting that runs plugins in the weaker jail instead.
  static std::string full_jail_unavailable(const JailSettings& jail);

  int pid() const;
  // Whether `pid` (as this process sees it) is the host or one of its descendants.
  bool owns(long pid) const;
  bool running();
  // "exit status 3", "killed by signal 11 (Segmentation fault)", "memory limit of 512 MB reached
  // by the plugin's processes together"; empty while running. running() is what notices a
  // resource group past its limits, and kills the host then.
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
