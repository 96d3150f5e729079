// connection.cpp — one host's connection: made (bound here, or connected to a remote host's
// server), its public face, and the turns of whoever serves its socket (the I/O thread, or a
// caller waiting for its reply). Messages out: connection_send.cpp; in: connection_receive.cpp;
// ZeroMQ's handshake and a remote link's events: connection_monitor.cpp.
#include "supervisor/connection_impl.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "remote/relay.hpp"

namespace bulkhead {
using namespace connection_parts;

namespace {

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

}  // namespace

Connection::Impl::Impl(const std::string& endpoint, std::int64_t max_bytes, Admission admission, ConnectionEvents e)
    : plain(!admission.token.empty()),
      zap_domain(AdmissionCheck::instance().admit(admission)),
      wire_socket(bind_admitted(zmq::socket_type::dealer, endpoint, max_bytes, admission, zap_domain)),
      monitor(shared_context(), zmq::socket_type::pair),
      events(std::move(e)) {
  // Handshake failures are otherwise silent: ZeroMQ closes the connection and tells no one.
  watch(ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
}

Connection::Impl::Impl(const RemoteLink& link, std::int64_t max_bytes, ConnectionEvents e)
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

void Connection::Impl::watch(int kinds, const std::string& endpoint) {
  const std::string monitor_endpoint = fresh_monitor_endpoint();
  if (zmq_socket_monitor(wire_socket.handle(), monitor_endpoint.c_str(), kinds) != 0) throw zmq::error_t();
  monitor.set(zmq::sockopt::linger, 0);
  monitor.connect(monitor_endpoint);
  if (!endpoint.empty()) wire_socket.connect(endpoint);
  io = std::thread([this] { run(); });
}

void Connection::Impl::wake() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto written = ::write(wake_fd, &one, sizeof one);
}

void Connection::Impl::clear_wake() {
  std::uint64_t count;
  [[maybe_unused]] auto read_bytes = ::read(wake_fd, &count, sizeof count);
}

void Connection::Impl::service() {
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

void Connection::Impl::run() {
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

void Connection::Impl::serve_until(const std::atomic<bool>& answered) {
  caller_waiting = true;
  zmq::pollitem_t items[] = {{wire_socket.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake_fd, ZMQ_POLLIN, 0}};
  while (!answered) {
    zmq::poll(items, 2, std::chrono::milliseconds(20));
    if (items[1].revents & ZMQ_POLLIN) clear_wake();
    service();
  }
  caller_waiting = false;
}

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
