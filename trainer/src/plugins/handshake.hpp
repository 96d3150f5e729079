// handshake.hpp — the trainer's side of a host's hello (docs/protocol.md, section 2): the hello
// checked against protocol/hello.schema.json, the protocol version and the start's token, then
// answered with a welcome or a refusal.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "plugins/connection.hpp"

namespace bulkhead {

// A hello refused, and the refusal sent; the message says why. Starting the host again would not help.
struct HelloRefused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The hooks a welcomed hello lists: those in schemas/hooks.json, and the others (never called).
struct HelloHooks {
  std::vector<std::string> known;
  std::vector<std::string> unknown;
};

// Checks `hello` and answers it on `connection`: a welcome carrying the protocol version, the
// plugin's options and its scratch folder as it sees it; or a refusal, then throws HelloRefused.
HelloHooks welcome(Connection& connection, const Json& hello, const std::string& token, const Json& options,
                   const std::string& scratch_dir);

}  // namespace bulkhead
