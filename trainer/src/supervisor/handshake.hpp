// handshake.hpp — the trainer's side of a host's hello (docs/protocol.md, section 3.1): the hello
// checked against protocol/hello.schema.json, a protocol version both speak chosen, the start's
// token checked, then answered with a welcome or a refusal.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "supervisor/connection.hpp"

namespace bulkhead {

// A hello refused, and the refusal sent; the message says why. Starting the host again would not help.
struct HelloRefused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A welcomed hello: the hooks it lists that are in schemas/hooks.json, the others (never called),
// and the protocol version the conversation speaks.
struct Welcomed {
  std::vector<std::string> known;
  std::vector<std::string> unknown;
  int protocol = 0;
};

// The versions the trainer serves: every one from wire::kOldestProtocolVersion to
// wire::kProtocolVersion, or on a connection without credentials (`plain` false) protocol 1 only.
// The highest that the hello's "protocols" (else its "protocol") also lists; nullopt if none.
std::optional<int> negotiate(const Json& hello, bool plain);

// Checks `hello` and answers it on `connection`: a welcome carrying the protocol version and
// `fields` (the plugin's options, its scratch folder as it sees it, a data-parallel run's rank); or
// a refusal, then throws HelloRefused.
Welcomed welcome(Connection& connection, const Json& hello, const std::string& token, bool plain, Json fields);

}  // namespace bulkhead
