// connection_impl.hpp — private to the Connection's files (connection*.cpp): its state and the
// pieces its parts share. Whoever holds socket_mutex serves the socket (docs/supervision.md).
#pragma once

#include <sys/eventfd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <zmq_addon.hpp>

#include <bulkhead/wire.hpp>

#include "supervisor/connection.hpp"

namespace bulkhead {
namespace connection_parts {

using Clock = std::chrono::steady_clock;
using wire::Message;

// After a host's death, how long each read waits for a reply it sent before dying.
constexpr std::chrono::milliseconds kLastRepliesWait{100};
// A remote host's link: pinged this often; given up when no handshake completed this long.
constexpr std::chrono::milliseconds kPingInterval{1000};
constexpr std::chrono::milliseconds kLinkWait{5000};
// ZeroMQ's own heartbeats: a peer silent this long is gone (a machine lost, a cable pulled).
constexpr int kHeartbeatMs = 1000, kHeartbeatTimeoutMs = 3000;

inline double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A reply that carries no result: the request failed, timed out or was cut off.
inline Reply failed(Reply::Status status, std::string why, double latency_ms) {
  Reply reply;
  reply.status = status;
  reply.detail = std::move(why);
  reply.latency_ms = latency_ms;
  return reply;
}

}  // namespace connection_parts

struct Connection::Impl {
  using Clock = connection_parts::Clock;
  using Message = connection_parts::Message;

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

  Impl(const std::string& endpoint, std::int64_t max_bytes, Admission admission, ConnectionEvents e);
  Impl(const RemoteLink& link, std::int64_t max_bytes, ConnectionEvents e);

  // Starts the monitor of `events`, connects to `endpoint` (if any), then starts the I/O thread,
  // which owns the socket from then on.
  void watch(int kinds, const std::string& endpoint = "");

  // Reads the socket's handshake failures. Socket held (the monitor is used with it).
  void read_monitor();

  // A peer of the other security mechanism fails the handshake on whichever side sees the
  // other's greeting first: here as a mismatch, or, when the peer saw it first and hung up, as a
  // handshake broken off. Before the hello, either means the peer spoke the other mechanism.
  void refused(std::uint16_t kind, std::uint32_t value);

  // A remote link's event: each failure named once, for what it most likely means.
  void link_event(std::uint16_t kind, std::uint32_t value);

  // A link not up after kLinkWait: nothing listens there, or the handshake hangs. Socket held.
  void check_link();

  // A remote link's last words, once the I/O thread has stopped: host.close, so that the server
  // ends the host at once rather than when the pings stop. Given a moment to leave only on a link
  // that is up: in libzmq 4.3 a closed socket that lingers while it retries a failed link holds
  // up the monitor events of every other socket of the context.
  void say_goodbye();

  void lose_link(const std::string& why);

  void wake();
  void clear_wake();

  // Sends at once when the socket is free (or this thread holds it); otherwise queues the message
  // for its holder, who sends queued messages before anything else and is woken for them. Never
  // waits: a notify hook's caller must not.
  void transmit(Message message);

  void send_frames(wire::Frames frames);

  // The I/O thread holds the socket only for moments: worth a short wait. A caller waiting for
  // its reply holds it for a round trip: queue behind it instead.
  bool take_socket(std::unique_lock<std::recursive_timed_mutex>& socket);

  // Registers a request and returns its id; without one when the host is gone (done has run).
  std::optional<std::uint32_t> open(std::function<void(Reply)> done, std::chrono::milliseconds deadline,
                                    const std::string& method);

  void flush_outbox();

  // Ends the oldest pending request: the host serves in order, so a broken message answers it.
  void fail_oldest(Reply::Status status, const std::string& why);

  // Before the hello, a message the protocol does not allow there is a hello gone wrong: the
  // wait for it ends now, with why, instead of at its deadline.
  bool refuse_hello(const std::string& why);

  void handle(Message&& message);

  // Runs at every turn of the socket, with thousands of notify hooks pending at times: the walk
  // over them waits until the earliest deadline known has passed.
  void expire_deadlines();

  // The next message, waiting up to `wait` for one; a remote host server's own are handed to
  // on_relay on the way. Socket held.
  std::optional<Message> receive(std::chrono::milliseconds wait);

  // Reads every message waiting on the socket and hands each to handle(), each receive waiting
  // up to `wait` for one. Socket held.
  void drain(std::chrono::milliseconds wait = std::chrono::milliseconds(0));

  // One turn of whoever holds the socket. Socket held.
  void service();

  // The I/O thread: serves the socket whenever no caller does (replies to requests sent without
  // waiting, the plugin's log and control messages, deadlines, the host's death). It watches the
  // socket's signal descriptor without holding the socket, so a caller can take it at any time;
  // while a caller waits on the socket (and so serves it), it only listens for a wake-up.
  void run();

  // A caller that holds the socket waits for its own reply, serving the socket meanwhile.
  void serve_until(const std::atomic<bool>& answered);

  // At most every 20 ms: asking costs a waitpid, and a call's wait would ask at every turn.
  void notice_death();

  // The pending request the host died serving: the one its serving word names, else the oldest; 0 if none.
  std::uint32_t blamed_request(const std::map<std::uint32_t, Pending>& ended) const;

  // A request the host never served: it died serving died_serving first.
  Reply lost_reply(double latency_ms) const;
};

}  // namespace bulkhead
