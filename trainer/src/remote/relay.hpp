// relay.hpp — the remote host server's own words, on the connection that carries the plugin's.
//
// Between a trainer and `bulkhead host serve` one ZeroMQ connection carries the plugin's messages
// unchanged and, beside them, a few of the server's and the trainer's own about the host itself
// (docs/protocol.md, Remote hosts): the trainer opens a host, pings, closes or kills it; the
// server says the host is open or has ended. Those travel with an empty first frame: no
// MessagePack message is empty, so nothing the plugin sends can pass for one (the server drops
// any empty frame a plugin sends first).
#pragma once

#include <string>

#include <bulkhead/wire.hpp>

namespace bulkhead::relay {

// The version of these messages, which host.open carries: a server refuses another, by name.
inline constexpr int kVersion = 1;

// The server's and trainer's notifications.
inline constexpr const char* kOpen = "host.open";          // trainer: {"relay", "plugin", "token"}
inline constexpr const char* kOpened = "host.opened";      // server: {"plugin", "version", "runtime", "options", "scratch_dir"}
inline constexpr const char* kEnded = "host.ended";        // server: {"description", "exit_status", "last_error_line"}
inline constexpr const char* kPing = "host.ping";          // trainer, every second
inline constexpr const char* kTerminate = "host.terminate";  // trainer: {"grace_ms"}
inline constexpr const char* kKill = "host.kill";          // trainer
inline constexpr const char* kClose = "host.close";        // trainer: the connection is going away

bool is_relay(const wire::Frames& frames);
wire::Frames encode(const std::string& method, Json params = Json::object());
// `frames` as is_relay() found them. Throws wire::DecodeError when they are not a notification.
wire::Message decode(const wire::Frames& frames);

}  // namespace bulkhead::relay
