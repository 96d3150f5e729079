// bulkhead/wire.hpp — protocol v1 in C++: messages, their MessagePack form, and the socket they travel on.
//
// Every ZeroMQ message is a MessagePack-RPC array in its first frame:
//   request [0, id, method, params]   response [1, id, error, result]   notification [2, method, params]
// followed by its attachments, if any: large bins (images) that travel as frames of their own,
// without a copy, each standing in the array as an ext value that names its frame
// (docs/protocol.md, section 2.1; schemas/protocol/envelope.schema.json). Shared by the plugin
// host and the trainer.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <zmq.hpp>

#include <bulkhead/plugin.hpp>

namespace bulkhead::wire {

// The protocol version this SDK speaks, and the oldest one the trainer still serves
// (schemas/hooks.json: protocol_version, oldest_protocol_version; docs/protocol.md, Versions).
inline constexpr int kProtocolVersion = 2;
inline constexpr int kOldestProtocolVersion = 1;

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

// A bin of at least this many bytes travels as an attachment when the receiver takes them (the
// trainer always does; a plugin host says so in its hello): below it, a frame costs more than a copy.
inline constexpr std::size_t kAttachmentMinBytes = 4096;
// The MessagePack ext type that stands for an attachment: its payload, 4 bytes big-endian, is the
// number of the frame (1, 2, ...) that holds the bytes. Each attachment is named exactly once.
inline constexpr std::int8_t kAttachmentExtType = 1;
// Most attachments one message may carry.
inline constexpr std::size_t kMaxAttachments = 64;

// A message as ZeroMQ frames: the envelope, then its attachments.
using Frames = std::vector<zmq::message_t>;

// The envelope alone, every bin inline.
std::string encode(const Message& message);
// With attachments, every bin of kAttachmentMinBytes or more leaves the message for a frame of its
// own, handed to ZeroMQ without a copy.
Frames encode_frames(Message message, bool attachments);
// Throws DecodeError naming what was wrong.
Message decode(const void* data, std::size_t size);
// One value as MessagePack and back, the way messages carry it: floats stay floats with their
// bits (-0.0, subnormals, NaN payloads), integers integers, bins bins.
std::string encode_value(const Json& value);
Json decode_value(const void* data, std::size_t size);
Message decode_frames(const Frames& frames);

// Images travel as {width, height, mode, data: bin}.
Json image_to_json(Image image);
// Throws DecodeError when a field is missing or data's length disagrees with width * height * channels.
// The pixels are moved out of `json`, not copied.
Image image_from_json(Json json);
// The same checks, without the pixels: an Image whose data is empty.
Image image_header(const Json& json);

// Pixels in shared memory (docs/protocol.md, section 2.2). A host whose hello says
// "image_region": true maps two memfds the trainer hands it (BULKHEAD_IMAGE_REGION =
// "<requests fd> <replies fd> <slots> <slot_bytes>"): the trainer writes a request's images into
// a slot of the first (sealed against the plugin's writes), the plugin its reply's images into the
// same slot of the second. Such an image is {width, height, mode, slot: {index, offset, bytes}}.
inline constexpr const char* kImageRegionVariable = "BULKHEAD_IMAGE_REGION";

// Which request the host is serving (docs/protocol.md, section 2.3): BULKHEAD_SERVING = "<fd>",
// a memfd of 8 bytes. Before it serves a request the host stores the request's id there (bytes 0-3,
// little-endian). The word outlives the process, so when the host dies the trainer knows which
// request it died serving, even if replies it had already sent were lost with it.
inline constexpr const char* kServingVariable = "BULKHEAD_SERVING";

// One slot as one side maps one of the two memories.
struct RegionSlot {
  int index = -1;
  std::uint8_t* data = nullptr;  // the slot's first byte
  std::size_t bytes = 0;         // the slot's size
};

// The slot the first image of `value` that lies in the region names (every other must name the same).
std::optional<int> image_slot_index(const Json& value);
// Moves the pixels of every inline image in `value` into `slot`, one after another, leaving
// "slot" where "data" was; an image that does not fit stays inline. Returns how many moved.
std::size_t images_to_slot(Json& value, const RegionSlot& slot);
// Copies the pixels of every image of `value` that lies in the region back in as "data", the
// receiver's own copy. Throws DecodeError for an image outside `slot` (another slot, past its end).
void images_from_slot(Json& value, const RegionSlot& slot);

// The ZeroMQ PLAIN user name a plugin connects with; its password is its start's one-time token.
inline constexpr const char* kPlainUser = "bulkhead";

// One end of a plugin connection: a DEALER socket that sends and receives whole messages.
//
// Since protocol 2 every connection is authenticated with ZeroMQ's PLAIN mechanism, so that only
// the plugin a socket was made for can use it: the plugin's end (connect) presents `token` as its
// password; the trainer's end (bind, with a `zap_domain` and a `token`) is a PLAIN server whose
// ZAP handler checks the password against the domain's token (trainer/src/supervisor/connection.cpp).
// A connection with another password is closed before any message passes. Bound with a
// `zap_domain` but no token, the socket takes connections without credentials (ZeroMQ's NULL
// mechanism, protocol 1) and its ZAP handler judges each by the process that made it. An empty
// token and domain: no authentication (tests).
class Channel {
 public:
  // bind: the trainer's end; otherwise the plugin's end connects.
  Channel(zmq::context_t& context, const std::string& endpoint, bool bind, std::int64_t max_message_bytes = -1,
          const std::string& token = "", const std::string& zap_domain = "");

  // attachments: large bins as frames of their own (the trainer always takes them).
  void send(Message message, bool attachments = true);
  // Waits up to timeout for a message; nullopt on timeout. Throws DecodeError on a malformed message.
  std::optional<Message> receive(std::chrono::milliseconds timeout);

  zmq::socket_t& socket() { return socket_; }

 private:
  zmq::socket_t socket_;
};

}  // namespace bulkhead::wire
