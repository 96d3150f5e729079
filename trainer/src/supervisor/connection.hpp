// connection.hpp — the trainer's end of one host's socket: pipelined requests with ids and
// deadlines, served by one I/O thread that owns the ZeroMQ socket. A local host connects to the
// socket the trainer binds; the trainer connects to a remote host's server (RemoteLink).
//
// Any thread may call request(); replies are matched by id, so a late reply to a request that
// already timed out is recognised and dropped. Notifications from the host (log, control) are
// handed to the callbacks.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <memory>
#include <string>

#include <bulkhead/plugin.hpp>
#include <bulkhead/wire.hpp>

#include "supervisor/admission.hpp"

namespace bulkhead {

// How a request ended.
struct Reply {
  enum class Status { ok, error, timeout, invalid, disconnected };
  Status status = Status::ok;
  Json result;         // ok
  std::string detail;  // error: the plugin's message; invalid: what was wrong; disconnected: why
  double latency_ms = 0;
  std::string code;  // error: the error's code ("hook_failed", "unknown_method", ...)
  // disconnected: the host died serving an earlier request, which carries the blame; this one
  // was lost with it (queued behind, or sent after the death), not a crash of its own.
  bool lost = false;
};

struct ConnectionEvents {
  std::function<void(const Json& params)> on_log;
  std::function<void(const Json& requests)> on_control;
  // A message that is not MessagePack, not an envelope, or answers no request (counted as invalid).
  std::function<void(const std::string& what)> on_protocol_error;
  // Polled by the I/O thread: non-empty ("exit status 3") once the host has died; every pending
  // and later request then ends as disconnected with that reason. The host serves in order, so
  // The request it died serving is the crash; every other one pending ends as lost with it
  // (Reply::lost). Which one: the host's serving word says (serving, below); for a host that does
  // not write it, the oldest request left once the replies already sent are read (it serves in
  // order, but replies still in its own send queue die with it).
  std::function<std::string()> exited;
  // The id of the request the host last said it serves (its BULKHEAD_SERVING word), 0 if none.
  std::function<std::uint32_t()> serving;
  // A remote host's server spoke for itself (remote/relay.hpp).
  std::function<void(const wire::Message& message)> on_relay;
  // The link to a remote host's server failed or broke, said in words (a wrong key, a refused
  // client, nothing listening, the peer gone silent).
  std::function<void(const std::string& why)> on_link_lost;
};

// A remote host's server (`bulkhead host serve`), as a train.json entry's "remote" names it.
struct RemoteLink {
  std::string endpoint;    // tcp://HOST:PORT
  std::string server_key;  // the server's public key (Z85) this trainer pins; empty: plain TCP ("insecure")
  std::string public_key, secret_key;  // this trainer's key pair (Z85), which the server must list
};

// A peer failed ZeroMQ's handshake by its security mechanism: it connected without credentials
// to a socket that wants them, or with credentials to one that takes none. Its hello can never
// arrive on this socket.
struct WrongMechanism : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The host's first message was meant as its hello but has the wrong shape (another id, a
// notification, not an envelope): waiting longer cannot help.
struct MalformedHello : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Connection {
 public:
  // Binds `endpoint`; only a peer that `admission` admits connects (bulkhead/wire.hpp).
  Connection(const std::string& endpoint, std::int64_t max_message_bytes, Admission admission, ConnectionEvents events);
  // Connects to a remote host's server, pings it every second, and says through on_link_lost
  // within seconds when the link cannot be made or breaks.
  Connection(const RemoteLink& link, std::int64_t max_message_bytes, ConnectionEvents events);
  ~Connection();  // stops the I/O thread; pending requests end as disconnected

  // Waits for the host's hello (request id 0); returns its params, or an empty optional on timeout.
  // Throws MalformedHello at once when what the host sent instead cannot be a hello, and
  // WrongMechanism when a peer's security mechanism is not the socket's.
  std::optional<Json> await_hello(std::chrono::milliseconds timeout, const std::function<bool()>& still_running);
  // The last connection ZeroMQ refused in its handshake, said in words; empty if none.
  std::string refused_connection() const;
  void answer_hello(const Json& error, const Json& result);
  // From now on, large bins go to the host as frames of their own (its hello said it takes them).
  void send_attachments(bool yes);

  // Sends a request; `done` runs on the I/O thread when it ends (reply, error, timeout, ...).
  void request(const std::string& method, Json params, std::chrono::milliseconds deadline,
               std::function<void(Reply)> done);
  // The same, waited for.
  Reply call(const std::string& method, Json params, std::chrono::milliseconds deadline);
  void notify(const std::string& method, Json params);
  // A message to a remote host's server itself (remote/relay.hpp), never seen by the plugin.
  void tell_relay(const std::string& method, Json params = Json::object());
  // Ends every pending request with `why` (the host died or is being killed).
  void fail_pending(const std::string& why);
  std::size_t pending() const;
  // The host died and one of its requests took the blame (its caller reports the crash).
  bool blamed_a_request() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulkhead
