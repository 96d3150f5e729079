// host_server.hpp — `bulkhead host serve`: one plugin's hosts, jailed as the trainer jails them,
// for trainers on other machines (docs/protocol.md, Remote hosts).
//
// A trainer connects (CURVE: the server admits only the client keys it lists, the trainer pins
// the server's key), asks for a host with the token of its start, and from then on talks to the
// plugin as to a local one: the server starts a host for that connection and carries every
// message between the two unchanged, and says when the host ends. One host per connection; a
// trainer that restarts the plugin connects again and gets a new one.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "supervisor/manifest.hpp"
#include "supervisor/plugin_settings.hpp"
#include "supervisor/sandbox.hpp"

namespace bulkhead {

struct HostServerSettings {
  std::string listen;                  // tcp://ADDR:PORT (PORT may be *: any free one)
  Manifest plugin;                     // what it serves
  std::string secret_key;              // its CURVE secret key (Z85); empty: plain TCP ("--insecure")
  std::set<std::string> allowed_clients;  // the trainers' public keys it admits
  JailSettings jail;
  PluginLimits limits;
  Permissions granted;                 // what its operator grants the plugin here (--grant)
  std::filesystem::path python;        // for Python plugins; "" = $BULKHEAD_PYTHON or /usr/bin/python3
  int max_hosts = 4;                   // hosts at once, all trainers together
};

class HostServer {
 public:
  // Binds the socket; throws std::runtime_error naming the address when it cannot.
  explicit HostServer(HostServerSettings settings);
  ~HostServer();  // ends every host

  // The address bound, its port resolved ("tcp://127.0.0.1:41877").
  std::string endpoint() const;
  // Serves until `stopping` says so (checked ten times a second).
  void serve(const std::function<bool()>& stopping);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulkhead
