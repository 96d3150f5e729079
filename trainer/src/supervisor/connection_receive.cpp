// connection_receive.cpp — messages in: the hello, replies matched to their requests by id, the
// plugin's notifications, broken messages; and the host's death, blamed on the request it served.
#include "supervisor/connection_impl.hpp"

#include <utility>

#include "remote/relay.hpp"

namespace bulkhead {
using namespace connection_parts;

void Connection::Impl::fail_oldest(Reply::Status status, const std::string& why) {
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

bool Connection::Impl::refuse_hello(const std::string& why) {
  if (hello_seen) return false;
  hello_seen = true;
  hello.set_exception(std::make_exception_ptr(MalformedHello(why)));
  return true;
}

void Connection::Impl::handle(Message&& message) {
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

std::optional<Message> Connection::Impl::receive(std::chrono::milliseconds wait) {
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

void Connection::Impl::drain(std::chrono::milliseconds wait) {
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

void Connection::Impl::notice_death() {
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

std::uint32_t Connection::Impl::blamed_request(const std::map<std::uint32_t, Pending>& ended) const {
  if (ended.empty()) return 0;
  const std::uint32_t serving = events.serving ? events.serving() : 0;
  return ended.count(serving) ? serving : ended.begin()->first;
}

Reply Connection::Impl::lost_reply(double latency_ms) const {
  Reply reply = failed(Reply::Status::disconnected,
                       "lost with the host, which died serving " + died_serving + " (" + death + ")", latency_ms);
  reply.lost = true;
  return reply;
}

}  // namespace bulkhead
