#include "remote/remote_host.hpp"

#include "remote/keys.hpp"
#include "remote/relay.hpp"

namespace bulkhead {

RemoteLink remote_link(const std::string& plugin, const RemoteSettings& remote, const std::filesystem::path& config_dir) {
  RemoteLink link{remote.endpoint, "", "", ""};
  if (remote.insecure) return link;
  try {
    link.server_key = keys::read_public_key(remote.server_key, config_dir);
    std::filesystem::path key_file = remote.client_key;
    if (key_file.is_relative() && !config_dir.empty()) key_file = config_dir / key_file;
    const keys::KeyPair own = keys::read_key_pair(key_file);
    link.public_key = own.public_key;
    link.secret_key = own.secret_key;
  } catch (const std::exception& e) {
    throw std::runtime_error("plugin '" + plugin + "' (remote " + remote.endpoint + "): " + e.what());
  }
  return link;
}

void RemoteHost::open(Connection& connection, const std::string& plugin, const std::string& token) {
  connection_ = &connection;
  connection.tell_relay(relay::kOpen, {{"relay", relay::kVersion}, {"plugin", plugin}, {"token", token}});
}

void RemoteHost::heard(const wire::Message& message) {
  const Json& params = message.params;
  if (message.method == relay::kOpened) {
    std::lock_guard<std::mutex> lock(mutex_);
    opened_ = params.is_object() ? params : Json::object();
  } else if (message.method == relay::kEnded && params.is_object()) {
    const Json status = params.value("exit_status", Json());
    ended(params.value("description", std::string("it ended")) + " (the remote host at " + endpoint_ + ")",
          status.is_number_integer() ? std::optional<int>(status.get<int>()) : std::nullopt,
          params.value("last_error_line", std::string()));
  }
}

void RemoteHost::link_lost(const std::string& why) { ended(why); }

void RemoteHost::ended(std::string description, std::optional<int> status, std::string error_line) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!ended_.empty()) return;
    ended_ = std::move(description);
    exit_status_ = status;
    if (!error_line.empty()) last_error_line_ = std::move(error_line);
  }
  changed_.notify_all();
}

Json RemoteHost::opened() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return opened_;
}

bool RemoteHost::running() {
  std::lock_guard<std::mutex> lock(mutex_);
  return ended_.empty();
}

std::string RemoteHost::exit_description() {
  std::lock_guard<std::mutex> lock(mutex_);
  return ended_;
}

std::optional<int> RemoteHost::exit_status() {
  std::lock_guard<std::mutex> lock(mutex_);
  return exit_status_;
}

std::string RemoteHost::last_error_line() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_error_line_;
}

void RemoteHost::terminate(std::chrono::milliseconds grace) {
  if (connection_) connection_->tell_relay(relay::kTerminate, {{"grace_ms", grace.count()}});
  // The server kills it after grace; its word that it did may be lost with the link.
  if (!wait_for_exit(grace + std::chrono::seconds(1))) kill_group();
}

void RemoteHost::kill_group() {
  if (connection_) connection_->tell_relay(relay::kKill);
  ended("killed by the trainer");
}

bool RemoteHost::wait_for_exit(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return changed_.wait_for(lock, timeout, [this] { return !ended_.empty(); });
}

}  // namespace bulkhead
