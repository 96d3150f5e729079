// remote_host.hpp — a plugin host that `bulkhead host serve` runs on another machine, as the
// supervisor sees it. What it knows is what the server says (host.opened, host.ended:
// remote/relay.hpp) and what the link does: a link lost is a host ended, so its calls fail and
// the plugin is restarted, that is, connected again, as a crashed local host would be.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>

#include "supervisor/connection.hpp"
#include "supervisor/plugin_host.hpp"
#include "supervisor/plugin_settings.hpp"

namespace bulkhead {

// The link a train.json entry's "remote" describes, its keys read (relative to config_dir).
// Throws std::runtime_error naming the plugin and the key file at fault.
RemoteLink remote_link(const std::string& plugin, const RemoteSettings& remote, const std::filesystem::path& config_dir);

class RemoteHost : public PluginHost {
 public:
  explicit RemoteHost(std::string endpoint) : endpoint_(std::move(endpoint)) {}

  // The connection to its server, once made; it must outlive every call below but the
  // destructor. Asks the server to start the plugin `plugin` with the start's token.
  void open(Connection& connection, const std::string& plugin, const std::string& token);
  // The connection's events.
  void heard(const wire::Message& message);
  void link_lost(const std::string& why);
  // host.opened's params, once the server sent them; null before.
  Json opened() const;

  std::string where() const override { return endpoint_; }
  bool running() override;
  std::string exit_description() override;
  std::optional<int> exit_status() override;
  std::string last_error_line() const override;
  void terminate(std::chrono::milliseconds grace) override;
  void kill_group() override;
  bool wait_for_exit(std::chrono::milliseconds timeout) override;

 private:
  void ended(std::string description, std::optional<int> status = std::nullopt, std::string error_line = "");

  const std::string endpoint_;
  Connection* connection_ = nullptr;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  Json opened_;
  std::string ended_;  // how it ended; empty while running
  std::optional<int> exit_status_;
  std::string last_error_line_;
};

}  // namespace bulkhead
