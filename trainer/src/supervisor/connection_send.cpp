// connection_send.cpp — messages out: requests registered with their deadlines, sent by the
// socket's holder or queued for it, and requests past their deadline failed.
#include "supervisor/connection_impl.hpp"

#include <algorithm>
#include <utility>

namespace bulkhead {
using namespace connection_parts;

void Connection::Impl::transmit(Message message) { send_frames(wire::encode_frames(std::move(message), attachments)); }

void Connection::Impl::send_frames(wire::Frames frames) {
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

bool Connection::Impl::take_socket(std::unique_lock<std::recursive_timed_mutex>& socket) {
  if (socket.try_lock()) return true;
  return !caller_waiting && socket.try_lock_for(std::chrono::milliseconds(1));
}

std::optional<std::uint32_t> Connection::Impl::open(std::function<void(Reply)> done, std::chrono::milliseconds deadline,
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

void Connection::Impl::flush_outbox() {
  std::deque<wire::Frames> to_send;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (outbox.empty()) return;
    to_send.swap(outbox);
  }
  for (auto& frames : to_send) zmq::send_multipart(wire_socket, frames, zmq::send_flags::dontwait);
}

void Connection::Impl::expire_deadlines() {
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

}  // namespace bulkhead
