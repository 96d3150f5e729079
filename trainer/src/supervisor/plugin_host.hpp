// plugin_host.hpp — what the supervisor needs of a plugin host, wherever it runs: a child of
// this trainer (host_process.hpp) or one that `bulkhead host serve` runs on another machine
// (remote/remote_host.hpp). Either way its messages travel on the host's Connection.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace bulkhead {

class PluginHost {
 public:
  virtual ~PluginHost() = default;

  // Where it runs, for the log: "pid 4242", "tcp://gpu-box:5555".
  virtual std::string where() const = 0;
  virtual bool running() = 0;
  // How it ended ("exit status 3", "killed by signal 11 (Segmentation fault)", "lost the
  // connection to ..."); empty while running.
  virtual std::string exit_description() = 0;
  virtual std::optional<int> exit_status() = 0;
  // The last line the plugin printed on stderr (load failures explain themselves there).
  virtual std::string last_error_line() const = 0;

  // Shutdown's last steps: SIGTERM, then SIGKILL after grace.
  virtual void terminate(std::chrono::milliseconds grace) = 0;
  virtual void kill_group() = 0;
  virtual bool wait_for_exit(std::chrono::milliseconds timeout) = 0;
};

}  // namespace bulkhead
