#include "supervisor/connection.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <zmq_addon.hpp>

#include <bulkhead/wire.hpp>

#include "remote/relay.hpp"

namespace bulkhead {
namespace {

using Clock = std::chrono::steady_clock;
using wire::Message;

// After a host's death, how long each read waits for a reply it sent before dying.
constexpr std::chrono::milliseconds kLastRepliesWait{100};
// A remote host's link: pinged this often; given up when no handshake completed this long.
constexpr std::chrono::milliseconds kPingInterval{1000};
constexpr std::chrono::milliseconds kLinkWait{5000};
// ZeroMQ's own heartbeats: a peer silent this long is gone (a machine lost, a cable pulled).
constexpr int kHeartbeatMs = 1000, kHeartbeatTimeoutMs = 3000;

// The trainer's end of a remote host's link: a CURVE client that pins the server's key (or plain
// TCP), with heartbeats.
zmq::socket_t connected_socket(const RemoteLink& link, std::int64_t max_bytes) {
  zmq::socket_t socket(shared_context(), zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  if (max_bytes > 0) socket.set(zmq::sockopt::maxmsgsize, max_bytes);
  socket.set(zmq::sockopt::heartbeat_ivl, kHeartbeatMs);
  socket.set(zmq::sockopt::heartbeat_timeout, kHeartbeatTimeoutMs);
  socket.set(zmq::sockopt::heartbeat_ttl, kHeartbeatTimeoutMs);
  if (!link.server_key.empty()) {
    socket.set(zmq::sockopt::curve_serverkey, link.server_key);
    socket.set(zmq::sockopt::curve_publickey, link.public_key);
    socket.set(zmq::sockopt::curve_secretkey, link.secret_key);
  }
  return socket;
}

std::string fresh_monitor_endpoint() {
  static std::atomic<long> next{0};
  return "inproc://bulkhead-connection-monitor-" + std::to_string(next++);
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A reply that carries no result: the request failed, timed out or was cut off.
Reply failed(Reply::Status status, std::string why, double latency_ms) {
  Reply reply;
  reply.status = status;
  reply.detail = std::move(why);
  reply.latency_ms = latency_ms;
  return reply;
}

}  // namespace

struct Connection::Impl {
  struct Pending {
    std::function<void(Reply)> done;
    Clock::time_point sent;
    Clock::time_point deadline;
    std::string method;
  };

  const bool plain;        // connections present the token (PLAIN); else none (NULL, protocol 1)
  const std::optional<RemoteLink> remote;  // set: the trainer connects to a remote host's server
  std::string zap_domain;  // before the socket, which needs it; empty for a remote link
  zmq::socket_t wire_socket;
  zmq::socket_t monitor;   // the socket's handshake failures, and a remote link's ups and downs (socket held)
  ConnectionEvents events;
  int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::atomic<bool> stopping{false};

  // Whoever holds it uses the socket: a caller sending its request and waiting for the reply
  // itself (no thread hand-off on the way out or back), or else the I/O thread. Recursive: a
  // reply's callback may send on the socket its thread already holds.
  std::recursive_timed_mutex socket_mutex;
  std::atomic<bool> caller_waiting{false};  // a caller holds the socket until its reply comes

  mutable std::mutex mutex;
  std::deque<wire::Frames> outbox;  // encoded messages waiting for the socket's holder to send
  std::atomic<bool> attachments{false};  // the host takes large bins as frames of their own
  std::map<std::uint32_t, Pending> pending;
  std::set<std::uint32_t> expired;  // timed out: a late reply to one of these is dropped quietly
  // No pending request ends sooner (answered ones may leave it early: then one walk too many).
  Clock::time_point earliest_deadline = Clock::time_point::max();
  std::uint32_t next_id = 1;
  std::string death;  // why the host is gone, once it is
  std::string died_serving;  // the request it died serving, if any: later ones are lost with it
  Clock::time_point next_death_check{};  // socket held
  std::promise<Json> hello;
  bool hello_seen = false;
  std::string refusal;          // the last connection ZeroMQ refused, in words
  bool wrong_mechanism = false;  // one was refused for its security mechanism
  // A remote link (socket held): whether its handshake completed, when it began, its next ping.
  bool link_up = false, link_lost = false, link_connected = false;
  Clock::time_point link_began = Clock::now(), next_ping{};
  std::thread io;

  Impl(const std::string& endpoint, std::int64_t max_bytes, Admission admission, ConnectionEvents e)
      : plain(!admission.token.empty()),
        zap_domain(AdmissionCheck::instance().admit(admission)),
        wire_socket(bind_admitted(zmq::socket_type::dealer, endpoint, max_bytes, admission, zap_domain)),
        monitor(shared_context(), zmq::socket_type::pair),
        events(std::move(e)) {
    // Handshake failures are otherwise silent: ZeroMQ closes the connection and tells no one.
    watch(ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
  }

  Impl(const RemoteLink& link, std::int64_t max_bytes, ConnectionEvents e)
      : plain(false),
        remote(link),
        wire_socket(connected_socket(link, max_bytes)),
        monitor(shared_context(), zmq::socket_type::pair),
        events(std::move(e)) {
    // A link that cannot be made is retried by ZeroMQ for ever, and a wrong key fails silently:
    // the monitor's events are how it is noticed and named.
    watch(ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
          ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL,
          link.endpoint);
  }

  // Starts the monitor of `events`, connects to `endpoint` (if any), then starts the I/O thread,
  // which owns the socket from then on.
  void watch(int kinds, const std::string& endpoint = "") {
    const std::string monitor_endpoint = fresh_monitor_endpoint();
    if (zmq_socket_monitor(wire_socket.handle(), monitor_endpoint.c_str(), kinds) != 0) throw zmq::error_t();
    monitor.set(zmq::sockopt::linger, 0);
    monitor.connect(monitor_endpoint);
    if (!endpoint.empty()) wire_socket.connect(endpoint);
    io = std::thread([this] { run(); });
  }

  // Reads the socket's handshake failures. Socket held (the monitor is used with it).
  void read_monitor() {
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

  // A peer of the other security mechanism fails the handshake on whichever side sees the
  // other's greeting first: here as a mismatch, or, when the peer saw it first and hung up, as a
  // handshake broken off. Before the hello, either means the peer spoke the other mechanism.
  void refused(std::uint16_t kind, std::uint32_t value) {
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

  // A remote link's event: each failure named once, for what it most likely means.
  void link_event(std::uint16_t kind, std::uint32_t value) {
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

  // A link not up after kLinkWait: nothing listens there, or the handshake hangs. Socket held.
  void check_link() {
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

  // A remote link's last words, once the I/O thread has stopped: host.close, so that the server
  // ends the host at once rather than when the pings stop. Given a moment to leave only on a link
  // that is up: in libzmq 4.3 a closed socket that lingers while it retries a failed link holds
  // up the monitor events of every other socket of the context.
  void say_goodbye() {
    flush_outbox();
    zmq::send_multipart(wire_socket, relay::encode(relay::kClose), zmq::send_flags::dontwait);
    wire_socket.set(zmq::sockopt::linger, link_up && !link_lost ? 200 : 0);
  }

  void lose_link(const std::string& why) {
    if (std::exchange(link_lost, true)) return;
    if (events.on_link_lost) events.on_link_lost(why);
  }

  void wake() {
    std::uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(wake_fd, &one, sizeof one);
  }
  void clear_wake() {
    std::uint64_t count;
    [[maybe_unused]] auto read_bytes = ::read(wake_fd, &count, sizeof count);
  }

  // Sends at once when the socket is free (or this thread holds it); otherwise queues the message
  // for its holder, who sends queued messages before anything else and is woken for them. Never
  // waits: a notify hook's caller must not.
  void transmit(Message message) { send_frames(wire::encode_frames(std::move(message), attachments)); }

  void send_frames(wire::Frames frames) {
    std::unique_lock<std::recursive_timed_mutex> socket(socket_mutex, std::try_to_lock);
    if (!socket) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        outbox.push_back(std::move(frames));
      }
      wake();
      return;
    }
    flush_outbox();
    zmq::send_multipart(wire_socket, frames, zmq::send_flags::dontwait);
    // A send may consume the signal that a message came: then the I/O thread would not wake
    // for it. Wake it rather than read here: replies are not the sender's work.
    if (wire_socket.get(zmq::sockopt::events) & ZMQ_POLLIN) wake();
  }

  // The I/O thread holds the socket only for moments: worth a short wait. A caller waiting for
  // its reply holds it for a round trip: queue behind it instead.
  bool take_socket(std::unique_lock<std::recursive_timed_mutex>& socket) {
    if (socket.try_lock()) return true;
    return !caller_waiting && socket.try_lock_for(std::chrono::milliseconds(1));
  }

  // Registers a request and returns its id; without one when the host is gone (done has run).
  std::optional<std::uint32_t> open(std::function<void(Reply)> done, std::chrono::milliseconds deadline,
                                    const std::string& method) {
    std::unique_lock<std::mutex> lock(mutex);
    if (!death.empty()) {
      Reply reply = died_serving.empty() ? failed(Reply::Status::disconnected, death, 0) : lost_reply(0);
      lock.unlock();
      done(std::move(reply));
      return std::nullopt;
    }
    const std::uint32_t id = next_id++;
    if (next_id == 0) next_id = 1;  // 0 is the hello's
    const auto now = Clock::now();
    pending[id] = {std::move(done), now, now + deadline, method};
    earliest_deadline = std::min(earliest_deadline, now + deadline);
    return id;
  }

  void flush_outbox() {
    std::deque<wire::Frames> to_send;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (outbox.empty()) return;
      to_send.swap(outbox);
    }
    for (auto& frames : to_send) zmq::send_multipart(wire_socket, frames, zmq::send_flags::dontwait);
  }

  // Ends the oldest pending request: the host serves in order, so a broken message answers it.
  void fail_oldest(Reply::Status status, const std::string& why) {
    std::function<void(Reply)> done;
    Reply reply;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (pending.empty()) return;
      auto oldest = pending.begin();
      done = std::move(oldest->second.done);
      reply = failed(status, why, ms_since(oldest->second.sent));
      pending.erase(oldest);
    }
    done(reply);
  }

  // Before the hello, a message the protocol does not allow there is a hello gone wrong: the
  // wait for it ends now, with why, instead of at its deadline.
  bool refuse_hello(const std::string& why) {
    if (hello_seen) return false;
    hello_seen = true;
    hello.set_exception(std::make_exception_ptr(MalformedHello(why)));
    return true;
  }

  void handle(Message&& message) {
    if (message.is_notification() && message.method == "hello" &&
        refuse_hello("hello came as a notification [2, \"hello\", {...}]; it is a request [0, 0, \"hello\", {...}]"))
      return;
    if (message.is_notification()) {
      if (message.method == "log" && events.on_log) events.on_log(message.params);
      else if (message.method == "control" && events.on_control) events.on_control(message.params.value("requests", Json()));
      else if (events.on_protocol_error) events.on_protocol_error("unknown notification '" + message.method + "'");
      return;
    }
    if (message.is_request()) {
      if (message.id == 0 && message.method == "hello" && !hello_seen) {
        hello_seen = true;
        hello.set_value(message.params);
      } else if (!refuse_hello("its first request is '" + message.method + "' with id " + std::to_string(message.id) +
                               "; the hello is [0, 0, \"hello\", {...}]") &&
                 events.on_protocol_error) {
        events.on_protocol_error("unexpected request '" + message.method + "' from the plugin");
      }
      return;
    }
    std::function<void(Reply)> done;
    Reply reply;
    {
      std::lock_guard<std::mutex> lock(mutex);
      auto found = pending.find(message.id);
      if (found == pending.end()) {
        const bool late = expired.erase(message.id) > 0;
        if (late) return;  // its request already failed by deadline and was counted then
      } else {
        done = std::move(found->second.done);
        reply.latency_ms = ms_since(found->second.sent);
        pending.erase(found);
      }
    }
    if (!done) {
      if (events.on_protocol_error)
        events.on_protocol_error("a reply with id " + std::to_string(message.id) + " answers no pending request");
      return;
    }
    if (message.error.is_null()) {
      reply.status = Reply::Status::ok;
      reply.result = std::move(message.result);  // an image's pixels: moved, never copied
    } else {
      reply.status = Reply::Status::error;
      reply.code = message.error.is_object() ? message.error.value("code", "") : "";
      reply.detail = message.error.is_object() ? message.error.value("message", message.error.dump()) : message.error.dump();
      if (message.error.is_object() && message.error.contains("traceback") && message.error["traceback"].is_string())
        reply.detail += "\n" + message.error["traceback"].get<std::string>();
    }
    done(std::move(reply));
  }

  // Runs at every turn of the socket, with thousands of notify hooks pending at times: the walk
  // over them waits until the earliest deadline known has passed.
  void expire_deadlines() {
    std::vector<std::pair<std::function<void(Reply)>, Reply>> ended;
    {
      std::lock_guard<std::mutex> lock(mutex);
      const auto now = Clock::now();
      if (now < earliest_deadline) return;
      earliest_deadline = Clock::time_point::max();
      for (auto it = pending.begin(); it != pending.end();) {
        if (it->second.deadline <= now) {
          ended.emplace_back(std::move(it->second.done), failed(Reply::Status::timeout, "", ms_since(it->second.sent)));
          expired.insert(it->first);
          it = pending.erase(it);
        } else {
          earliest_deadline = std::min(earliest_deadline, it->second.deadline);
          ++it;
        }
      }
    }
    for (auto& [done, reply] : ended) done(std::move(reply));
  }

  // The next message, waiting up to `wait` for one; a remote host server's own are handed to
  // on_relay on the way. Socket held.
  std::optional<Message> receive(std::chrono::milliseconds wait) {
    // With no time to wait, no poll either: a reader draining the socket would pay a syscall per message.
    zmq::pollitem_t item{wire_socket.handle(), 0, ZMQ_POLLIN, 0};
    for (;;) {
      if (wait.count() > 0 && zmq::poll(&item, 1, wait) == 0) return std::nullopt;
      wire::Frames frames;
      if (!zmq::recv_multipart(wire_socket, std::back_inserter(frames), zmq::recv_flags::dontwait)) return std::nullopt;
      if (!remote || !relay::is_relay(frames)) return wire::decode_frames(frames);
      try {
        const Message message = relay::decode(frames);
        if (events.on_relay) events.on_relay(message);
      } catch (const wire::DecodeError& e) {
        if (events.on_protocol_error) events.on_protocol_error(std::string("the remote host's server sent a broken message: ") + e.what());
      }
    }
  }

  // Reads every message waiting on the socket and hands each to handle(), each receive waiting
  // up to `wait` for one. Socket held.
  void drain(std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
    while (true) {
      std::optional<Message> message;
      try {
        message = receive(wait);
      } catch (const wire::DecodeError& e) {
        if (refuse_hello(std::string("its first message breaks the protocol: ") + e.what())) continue;
        if (events.on_protocol_error) events.on_protocol_error(e.what());
        fail_oldest(Reply::Status::invalid, e.what());
        continue;
      }
      if (!message) break;
      handle(std::move(*message));
    }
  }

  // One turn of whoever holds the socket. Socket held.
  void service() {
    flush_outbox();
    if (remote) {
      // A remote link's failures end a call's wait, which serves the socket itself meanwhile.
      read_monitor();
      check_link();
    }
    drain();
    expire_deadlines();
    notice_death();
  }

  // The I/O thread: serves the socket whenever no caller does (replies to requests sent without
  // waiting, the plugin's log and control messages, deadlines, the host's death). It watches the
  // socket's signal descriptor without holding the socket, so a caller can take it at any time;
  // while a caller waits on the socket (and so serves it), it only listens for a wake-up.
  void run() {
    const int socket_fd = wire_socket.get(zmq::sockopt::fd);
    pollfd watched[] = {{wake_fd, POLLIN, 0}, {socket_fd, POLLIN, 0}};
    while (!stopping) {
      ::poll(watched, caller_waiting ? 1 : 2, 20);
      if (watched[0].revents & POLLIN) clear_wake();
      std::unique_lock<std::recursive_timed_mutex> socket(socket_mutex, std::try_to_lock);
      if (!socket) continue;
      // Here, not in service(): a caller waiting for its reply need not look for refused
      // connections at every turn; the hello's wait, when they matter, is this thread's.
      if (!remote) read_monitor();
      service();
    }
  }

  // A caller that holds the socket waits for its own reply, serving the socket meanwhile.
  void serve_until(const std::atomic<bool>& answered) {
    caller_waiting = true;
    zmq::pollitem_t items[] = {{wire_socket.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake_fd, ZMQ_POLLIN, 0}};
    while (!answered) {
      zmq::poll(items, 2, std::chrono::milliseconds(20));
      if (items[1].revents & ZMQ_POLLIN) clear_wake();
      service();
    }
    caller_waiting = false;
  }

  // At most every 20 ms: asking costs a waitpid, and a call's wait would ask at every turn.
  void notice_death() {
    if (!events.exited || !death.empty()) return;
    const auto now = Clock::now();
    if (now < next_death_check) return;
    next_death_check = now + std::chrono::milliseconds(20);
    std::string why = events.exited();
    if (why.empty()) return;
    // Replies the host sent before it died may still be on their way through ZeroMQ: each
    // answers its request, so that the crash lands on the one the host was serving.
    drain(kLastRepliesWait);
    std::map<std::uint32_t, Pending> ended;
    {
      std::lock_guard<std::mutex> lock(mutex);
      death = why;
      ended.swap(pending);
    }
    const std::uint32_t blamed = blamed_request(ended);
    if (blamed) {
      std::lock_guard<std::mutex> lock(mutex);
      died_serving = ended.at(blamed).method;
    }
    for (auto& [id, p] : ended) {
      const bool served = id == blamed;
      p.done(served ? failed(Reply::Status::disconnected, why, ms_since(p.sent)) : lost_reply(ms_since(p.sent)));
    }
  }

  // The pending request the host died serving: the one its serving word names, else the oldest; 0 if none.
  std::uint32_t blamed_request(const std::map<std::uint32_t, Pending>& ended) const {
    if (ended.empty()) return 0;
    const std::uint32_t serving = events.serving ? events.serving() : 0;
    return ended.count(serving) ? serving : ended.begin()->first;
  }

  // A request the host never served: it died serving died_serving first.
  Reply lost_reply(double latency_ms) const {
    Reply reply = failed(Reply::Status::disconnected,
                         "lost with the host, which died serving " + died_serving + " (" + death + ")", latency_ms);
    reply.lost = true;
    return reply;
  }
};

Connection::Connection(const std::string& endpoint, std::int64_t max_message_bytes, Admission admission,
                       ConnectionEvents events)
    : impl_(std::make_unique<Impl>(endpoint, max_message_bytes, std::move(admission), std::move(events))) {}

Connection::Connection(const RemoteLink& link, std::int64_t max_message_bytes, ConnectionEvents events)
    : impl_(std::make_unique<Impl>(link, max_message_bytes, std::move(events))) {}

Connection::~Connection() {
  impl_->stopping = true;
  impl_->wake();
  impl_->io.join();
  if (impl_->remote) impl_->say_goodbye();
  fail_pending("the connection closed");
  ::close(impl_->wake_fd);
  if (!impl_->zap_domain.empty()) AdmissionCheck::instance().forget(impl_->zap_domain);
}

std::optional<Json> Connection::await_hello(std::chrono::milliseconds timeout, const std::function<bool()>& still_running) {
  auto future = impl_->hello.get_future();
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (future.wait_for(std::chrono::milliseconds(10)) == std::future_status::ready) return future.get();
    {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      if (impl_->wrong_mechanism) throw WrongMechanism(impl_->refusal);
    }
    if (!still_running()) return std::nullopt;
  }
  return std::nullopt;
}

std::string Connection::refused_connection() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->refusal;
}

void Connection::answer_hello(const Json& error, const Json& result) {
  Message reply = Message::response(0, result);
  reply.error = error;
  impl_->transmit(std::move(reply));
}

void Connection::send_attachments(bool yes) { impl_->attachments = yes; }

void Connection::request(const std::string& method, Json params, std::chrono::milliseconds deadline,
                         std::function<void(Reply)> done) {
  if (auto id = impl_->open(std::move(done), deadline, method)) impl_->transmit(Message::request(*id, method, std::move(params)));
}

Reply Connection::call(const std::string& method, Json params, std::chrono::milliseconds deadline) {
  std::unique_lock<std::recursive_timed_mutex> socket(impl_->socket_mutex, std::defer_lock);
  if (!impl_->take_socket(socket)) {
    // Another caller is waiting on the socket: queue behind it, and be answered through the I/O thread.
    auto promise = std::make_shared<std::promise<Reply>>();
    auto future = promise->get_future();
    request(method, std::move(params), deadline, [promise](Reply reply) { promise->set_value(std::move(reply)); });
    return future.get();
  }
  // The fast path: send and wait on this thread, the socket held. The callback may also run on
  // another thread (fail_pending), hence the atomic flag, set after the reply is in place.
  Reply reply;
  std::atomic<bool> answered{false};
  Impl* impl = impl_.get();
  const auto waiter = std::this_thread::get_id();
  const auto id = impl_->open(
      [&reply, &answered, impl, waiter](Reply r) {
        reply = std::move(r);
        answered = true;
        // From another thread, the waiter may be asleep in poll. (Its frame may be gone by now:
        // only the copies are used.)
        if (std::this_thread::get_id() != waiter) impl->wake();
      },
      deadline, method);
  if (!id) return reply;
  impl_->transmit(Message::request(*id, method, std::move(params)));
  impl_->serve_until(answered);
  return reply;
}

void Connection::notify(const std::string& method, Json params) {
  impl_->transmit(Message::notification(method, std::move(params)));
}

void Connection::tell_relay(const std::string& method, Json params) {
  impl_->send_frames(relay::encode(method, std::move(params)));
}

void Connection::fail_pending(const std::string& why) {
  std::map<std::uint32_t, Impl::Pending> ended;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    ended.swap(impl_->pending);
  }
  for (auto& [id, pending] : ended)
    pending.done(failed(Reply::Status::disconnected, why, ms_since(pending.sent)));
}

std::size_t Connection::pending() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->pending.size();
}

bool Connection::blamed_a_request() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return !impl_->died_serving.empty();
}

}  // namespace bulkhead
