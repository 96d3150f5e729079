#include "remote/relay.hpp"

namespace bulkhead::relay {

bool is_relay(const wire::Frames& frames) { return frames.size() >= 2 && frames[0].size() == 0; }

wire::Frames encode(const std::string& method, Json params) {
  wire::Frames frames = wire::encode_frames(wire::Message::notification(method, std::move(params)), false);
  frames.insert(frames.begin(), zmq::message_t());
  return frames;
}

wire::Message decode(const wire::Frames& frames) {
  wire::Frames rest;
  for (std::size_t i = 1; i < frames.size(); ++i) rest.emplace_back(frames[i].data(), frames[i].size());
  wire::Message message = wire::decode_frames(rest);
  if (!message.is_notification()) throw wire::DecodeError("a relay message is a notification");
  return message;
}

}  // namespace bulkhead::relay
