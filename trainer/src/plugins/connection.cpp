#include "plugins/connection.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
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

namespace bulkhead {
namespace {

using Clock = std::chrono::steady_clock;
using wire::Message;

zmq::context_t& shared_context() {
  static zmq::context_t context(1);
  return context;
}

// ZeroMQ asks this handler (RFC 27, ZAP) about every connection made to a PLAIN server socket of
// the shared context, before any message passes: the password must be the token of the
// connection's own domain. One handler per process, on its own thread, for the process's life.
class TokenCheck {
 public:
  static TokenCheck& instance() {
    static TokenCheck* check = new TokenCheck;  // never destroyed: its thread serves until exit
    return *check;
  }
  // A fresh ZAP domain whose connections must present `token`.
  std::string admit(const std::string& token) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string domain = "bulkhead-" + std::to_string(next_++);
    tokens_[domain] = token;
    return domain;
  }
  void forget(const std::string& domain) {
    std::lock_guard<std::mutex> lock(mutex_);
    tokens_.erase(domain);
  }

 private:
  TokenCheck() : socket_(shared_context(), zmq::socket_type::rep) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("inproc://zeromq.zap.01");
    std::thread([this] { serve(); }).detach();
  }

  void serve() {
    for (;;) {
      std::vector<zmq::message_t> request;
      try {
        if (!zmq::recv_multipart(socket_, std::back_inserter(request))) continue;
      } catch (const zmq::error_t&) {
        socket_.close();  // the context is ending with the process, and waits for this socket
        return;
      }
      // version, request id, domain, address, identity, mechanism, user name, password
      auto text = [&](std::size_t i) { return i < request.size() ? request[i].to_string() : std::string(); };
      bool ok = false;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = tokens_.find(text(2));
        ok = text(5) == "PLAIN" && text(6) == wire::kPlainUser && found != tokens_.end() && found->second == text(7);
      }
      std::array<zmq::const_buffer, 6> reply = {zmq::str_buffer("1.0"), zmq::buffer(request.size() > 1 ? request[1].to_string_view() : ""),
                                                zmq::buffer(std::string_view(ok ? "200" : "400")),
                                                zmq::buffer(std::string_view(ok ? "OK" : "wrong token")), zmq::str_buffer(""),
                                                zmq::str_buffer("")};
      zmq::send_multipart(socket_, reply);
    }
  }

  zmq::socket_t socket_;
  std::mutex mutex_;
  std::map<std::string, std::string> tokens_;
  long next_ = 0;
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

struct Connection::Impl {
  struct Pending {
    std::function<void(Reply)> done;
    Clock::time_point sent;
    Clock::time_point deadline;
  };

  std::string zap_domain;  // before the channel, which needs it
  wire::Channel channel;
  ConnectionEvents events;
  int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::atomic<bool> stopping{false};

  mutable std::mutex mutex;
  std::deque<std::string> outbox;  // encoded messages for the I/O thread to send
  std::map<std::uint32_t, Pending> pending;
  std::set<std::uint32_t> expired;  // timed out: a late reply to one of these is dropped quietly
  std::uint32_t next_id = 1;
  std::string death;  // why the host is gone, once it is
  std::promise<Json> hello;
  bool hello_seen = false;
  std::thread io;

  Impl(const std::string& endpoint, std::int64_t max_bytes, const std::string& token, ConnectionEvents e)
      : zap_domain(TokenCheck::instance().admit(token)),
        channel(shared_context(), endpoint, /*bind=*/true, max_bytes, token, zap_domain),
        events(std::move(e)) {
    io = std::thread([this] { run(); });
  }

  void wake() {
    std::uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(wake_fd, &one, sizeof one);
  }

  void enqueue(const Message& message) {
    std::string bytes = wire::encode(message);
    {
      std::lock_guard<std::mutex> lock(mutex);
      outbox.push_back(std::move(bytes));
    }
    wake();
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
      reply = {status, nullptr, why, ms_since(oldest->second.sent)};
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

  void handle(const Message& message) {
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
      reply.result = message.result;
    } else {
      reply.status = Reply::Status::error;
      reply.code = message.error.is_object() ? message.error.value("code", "") : "";
      reply.detail = message.error.is_object() ? message.error.value("message", message.error.dump()) : message.error.dump();
      if (message.error.is_object() && message.error.contains("traceback") && message.error["traceback"].is_string())
        reply.detail += "\n" + message.error["traceback"].get<std::string>();
    }
    done(std::move(reply));
  }

  void expire_deadlines() {
    std::vector<std::pair<std::function<void(Reply)>, Reply>> ended;
    {
      std::lock_guard<std::mutex> lock(mutex);
      const auto now = Clock::now();
      for (auto it = pending.begin(); it != pending.end();) {
        if (it->second.deadline <= now) {
          ended.emplace_back(std::move(it->second.done), Reply{Reply::Status::timeout, nullptr, "", ms_since(it->second.sent)});
          expired.insert(it->first);
          it = pending.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& [done, reply] : ended) done(std::move(reply));
  }

  void run() {
    zmq::pollitem_t items[] = {{channel.socket().handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake_fd, ZMQ_POLLIN, 0}};
    while (!stopping) {
      zmq::poll(items, 2, std::chrono::milliseconds(20));
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t count;
        [[maybe_unused]] auto read_bytes = ::read(wake_fd, &count, sizeof count);
      }
      std::deque<std::string> to_send;
      {
        std::lock_guard<std::mutex> lock(mutex);
        to_send.swap(outbox);
      }
      for (auto& bytes : to_send) channel.socket().send(zmq::buffer(bytes), zmq::send_flags::dontwait);
      while (true) {
        std::optional<Message> message;
        try {
          message = channel.receive(std::chrono::milliseconds(0));
        } catch (const wire::DecodeError& e) {
          if (refuse_hello(std::string("its first message breaks the protocol: ") + e.what())) continue;
          if (events.on_protocol_error) events.on_protocol_error(e.what());
          fail_oldest(Reply::Status::invalid, e.what());
          continue;
        }
        if (!message) break;
        handle(*message);
      }
      expire_deadlines();
      notice_death();
    }
  }

  void notice_death() {
    if (!events.exited || !death.empty()) return;
    std::string why = events.exited();
    if (why.empty()) return;
    std::map<std::uint32_t, Pending> ended;
    {
      std::lock_guard<std::mutex> lock(mutex);
      death = why;
      ended.swap(pending);
    }
    for (auto& [id, p] : ended) p.done(Reply{Reply::Status::disconnected, nullptr, why, ms_since(p.sent)});
  }
};

Connection::Connection(const std::string& endpoint, std::int64_t max_message_bytes, const std::string& token,
                       ConnectionEvents events)
    : impl_(std::make_unique<Impl>(endpoint, max_message_bytes, token, std::move(events))) {}

Connection::~Connection() {
  impl_->stopping = true;
  impl_->wake();
  impl_->io.join();
  fail_pending("the connection closed");
  ::close(impl_->wake_fd);
  TokenCheck::instance().forget(impl_->zap_domain);
}

std::optional<Json> Connection::await_hello(std::chrono::milliseconds timeout, const std::function<bool()>& still_running) {
  auto future = impl_->hello.get_future();
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (future.wait_for(std::chrono::milliseconds(10)) == std::future_status::ready) return future.get();
    if (!still_running()) return std::nullopt;
  }
  return std::nullopt;
}

void Connection::answer_hello(const Json& error, const Json& result) {
  Message reply = Message::response(0, result);
  reply.error = error;
  impl_->enqueue(reply);
}

void Connection::request(const std::string& method, Json params, std::chrono::milliseconds deadline,
                         std::function<void(Reply)> done) {
  std::uint32_t id;
  {
    std::unique_lock<std::mutex> lock(impl_->mutex);
    if (!impl_->death.empty()) {
      std::string why = impl_->death;
      lock.unlock();
      done(Reply{Reply::Status::disconnected, nullptr, why, 0});
      return;
    }
    id = impl_->next_id++;
    if (impl_->next_id == 0) impl_->next_id = 1;  // 0 is the hello's
    const auto now = Clock::now();
    impl_->pending[id] = {std::move(done), now, now + deadline};
  }
  impl_->enqueue(Message::request(id, method, std::move(params)));
}

Reply Connection::call(const std::string& method, Json params, std::chrono::milliseconds deadline) {
  auto promise = std::make_shared<std::promise<Reply>>();
  auto future = promise->get_future();
  request(method, std::move(params), deadline, [promise](Reply reply) { promise->set_value(std::move(reply)); });
  return future.get();
}

void Connection::notify(const std::string& method, Json params) {
  impl_->enqueue(Message::notification(method, std::move(params)));
}

void Connection::fail_pending(const std::string& why) {
  std::map<std::uint32_t, Impl::Pending> ended;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    ended.swap(impl_->pending);
  }
  for (auto& [id, pending] : ended)
    pending.done(Reply{Reply::Status::disconnected, nullptr, why, ms_since(pending.sent)});
}

std::size_t Connection::pending() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->pending.size();
}

}  // namespace bulkhead
