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

#include "supervisor/manifest.hpp"
#include "supervisor/plugin_host.hpp"
#include "supervisor/plugin_runner.hpp"
#include "supervisor/sandbox.hpp"
#include "supervisor/shared_region.hpp"

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

// A folder for one start's socket, which only the plugin's user may enter; inside the jail it is
// the only trace of the trainer's files. Throws naming the folder when it cannot be handed over.
std::filesystem::path host_socket_folder(const std::filesystem::path& runtime_dir, const std::string& name, int generation,
                                         const PluginIdentity& identity);
// The socket in such a folder, "ipc://DIR/plugin.sock"; throws when its path is too long for one.
std::string host_endpoint(const std::filesystem::path& socket_dir);

class HostProcess : public PluginHost {
 public:
  explicit HostProcess(const HostLaunch& launch);
  ~HostProcess() override;  // kills the group if still running, and reaps it

  // Whether the full jail can be built on this machine, tried once per process by jailing the
  // real host around /bin/true: empty when it can, else why not, naming the missing feature and
  // the train.json setting that runs plugins in the weaker jail instead.
  static std::string full_jail_unavailable(const JailSettings& jail);

  int pid() const;
  std::string where() const override { return "pid " + std::to_string(pid()); }
  // Whether `pid` (as this process sees it) is the host or one of its descendants.
  bool owns(long pid) const;
  // running() is what notices a resource group past its limits, and kills the host then
  // (exit_description: "memory limit of 512 MB reached by the plugin's processes together").
  bool running() override;
  std::string exit_description() override;
  std::optional<int> exit_status() override;
  std::string last_error_line() const override;

  // To the whole process group.
  void terminate(std::chrono::milliseconds grace) override;
  void kill_group() override;
  bool wait_for_exit(std::chrono::milliseconds timeout) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulkhead
