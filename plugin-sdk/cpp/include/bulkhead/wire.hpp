// bulkhead/wire.hpp — protocol v1 in C++: messages, their MessagePack form, and the socket they travel on.
//
// Every ZeroMQ message is one frame holding one MessagePack-RPC array:
//   request [0, id, method, params]   response [1, id, error, result]   notification [2, method, params]
// (docs/protocol.md; schemas/protocol/envelope.schema.json). Shared by the plugin host and the trainer.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include <zmq.hpp>

#include <bulkhead/plugin.hpp>

namespace bulkhead::wire {

inline constexpr int kProtocolVersion = 1;

// A message that is not a well-formed envelope: not MessagePack, wrong shape, too deep.
struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Message {
  enum class Kind { request = 0, response = 1, notification = 2 };

  Kind kind = Kind::notification;
  std::uint32_t id = 0;  // request and response
  std::string method;    // request and notification
  Json params;           // request and notification
  Json error;            // response: null, or {code, message, traceback?}
  Json result;           // response

  static Message request(std::uint32_t id, std::string method, Json params);
  static Message response(std::uint32_t id, Json result);
  static Message error_response(std::uint32_t id, const std::string& code, const std::string& message);
  static Message notification(std::string method, Json params);

  bool is_request() const { return kind == Kind::request; }
  bool is_response() const { return kind == Kind::response; }
  bool is_notification() const { return kind == Kind::notification; }
  // The envelope as JSON ([kind, id, method, params] ...), for schema validation and logs.
  Json to_json() const;
};

std::string encode(const Message& message);
// Throws DecodeError naming what was wrong.
Message decode(const void* data, std::size_t size);

// Images travel as {width, height, mode, data: bin}.
Json image_to_json(Image image);
// Throws DecodeError when a field is missing or data's length disagrees with width * height * channels.
Image image_from_json(const Json& json);

// The ZeroMQ PLAIN user name a plugin connects with; its password is its start's one-time token.
inline constexpr const char* kPlainUser = "bulkhead";

// One end of a plugin connection: a DEALER socket that sends and receives whole messages.
//
// Every connection is authenticated with ZeroMQ's PLAIN mechanism, so that only the plugin a
// socket was made for can use it: the plugin's end (connect) presents `token` as its password;
// the trainer's end (bind) is a PLAIN server whose ZAP handler checks the password against
// `zap_domain`'s token (trainer/src/plugins/connection.cpp). A connection with another password
// is closed before any message passes. An empty token or domain: no authentication (tests).
class Channel {
 public:
  // bind: the trainer's end; otherwise the plugin's end connects.
  Channel(zmq::context_t& context, const std::string& endpoint, bool bind, std::int64_t max_message_bytes = -1,
          const std::string& token = "", const std::string& zap_domain = "");

  void send(const Message& message);
  // Waits up to timeout for a message; nullopt on timeout. Throws DecodeError on a malformed message.
  std::optional<Message> receive(std::chrono::milliseconds timeout);
  // Same, but hands back the raw bytes too (the trainer counts and reports bad replies).
  std::optional<zmq::message_t> receive_raw(std::chrono::milliseconds timeout);

  zmq::socket_t& socket() { return socket_; }

 private:
  zmq::socket_t socket_;
};

}  // namespace bulkhead::wire
