// connection_monitor.cpp — what ZeroMQ's socket monitor tells: a connection refused in the
// handshake (the other security mechanism, a wrong password), and a remote link's ups and downs.
#include "supervisor/connection_impl.hpp"

#include <cstring>

#include "remote/relay.hpp"

namespace bulkhead {
using namespace connection_parts;

void Connection::Impl::read_monitor() {
  std::vector<zmq::message_t> event;
  while (zmq::recv_multipart(monitor, std::back_inserter(event), zmq::recv_flags::dontwait)) {
    if (event.size() >= 1 && event[0].size() >= 6) {
      std::uint16_t kind;
      std::uint32_t value;
      std::memcpy(&kind, event[0].data(), sizeof kind);
      std::memcpy(&value, static_cast<const char*>(event[0].data()) + 2, sizeof value);
      if (remote)
        link_event(kind, value);
      else
        refused(kind, value);
    }
    event.clear();
  }
}

void Connection::Impl::refused(std::uint16_t kind, std::uint32_t value) {
  std::lock_guard<std::mutex> lock(mutex);
  const bool mismatch = kind == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL && value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH;
  if (mismatch || (kind == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && !hello_seen)) {
    wrong_mechanism = true;
    refusal = plain ? "a connection without ZeroMQ PLAIN credentials was refused: protocol 2 needs the user name \"" +
                          std::string(wire::kPlainUser) + "\" and the password BULKHEAD_TOKEN (docs/protocol.md, section 2)"
                    : "a connection with credentials was refused: this socket takes none (protocol 1)";
  } else if (kind == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
    refusal = plain ? "a connection with a wrong PLAIN user name or password was refused (the user name is \"" +
                          std::string(wire::kPlainUser) + "\", the password BULKHEAD_TOKEN)"
                    : "a connection from a process that is not the plugin's was refused";
  } else if (kind == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
    refusal = "a connection broke ZeroMQ's handshake (ZMTP protocol error " + std::to_string(value) + ")";
  }
}

void Connection::Impl::link_event(std::uint16_t kind, std::uint32_t value) {
  const std::string& at = remote->endpoint;
  if (kind == ZMQ_EVENT_CONNECTED) link_connected = true;
  if (kind == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) link_up = true;
  if (kind == ZMQ_EVENT_DISCONNECTED && link_up)
    lose_link("lost the connection to the remote host at " + at + " (it closed, or went silent for " +
              std::to_string(kHeartbeatTimeoutMs / 1000) + " s)");
  if (link_up) return;
  if (kind == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
    lose_link("the remote host at " + at + " refused this trainer's public key " + remote->public_key +
              ": add it (the .pub file of the entry's client_key) to the server's --allow list");
  else if (kind == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL && value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
    lose_link(!remote->server_key.empty() ? "the remote host at " + at + " does not speak CURVE (was it started with --insecure?)"
                    : "the remote host at " + at + " wants CURVE keys, and this entry is \"insecure\"");
  else if (kind == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL || kind == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
    lose_link("the remote host at " + at + " broke off the CURVE handshake: its public key is not the server_key " +
              "this entry pins (" + remote->server_key + "), or it is not a bulkhead host");
}

void Connection::Impl::check_link() {
  const auto now = Clock::now();
  if (!link_up && !link_lost && now - link_began > kLinkWait)
    lose_link((link_connected ? "the remote host at " + remote->endpoint + " took a connection but never completed its handshake"
                              : "nothing accepts connections at " + remote->endpoint) +
              " (waited " + std::to_string(kLinkWait.count() / 1000) + " s)");
  if (now >= next_ping) {
    next_ping = now + kPingInterval;
    send_frames(relay::encode(relay::kPing));
  }
}

void Connection::Impl::say_goodbye() {
  flush_outbox();
  zmq::send_multipart(wire_socket, relay::encode(relay::kClose), zmq::send_flags::dontwait);
  wire_socket.set(zmq::sockopt::linger, link_up && !link_lost ? 200 : 0);
}

void Connection::Impl::lose_link(const std::string& why) {
  if (std::exchange(link_lost, true)) return;
  if (events.on_link_lost) events.on_link_lost(why);
}

}  // namespace bulkhead
