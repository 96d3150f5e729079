#include <bulkhead/wire.hpp>

#include <endian.h>

#include <cstdint>
#include <cstring>

#include <msgpack.hpp>
#include <zmq_addon.hpp>

namespace bulkhead::wire {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

// Every float as a float64 with its own bits: msgpack-cxx's pack_double writes an integral double
// as an integer (2.0 as 2, -0.0 as 0), and a plugin's state must come back as it was sent.
void pack_float64(msgpack::sbuffer& out, double value) {
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  bits = htobe64(bits);
  char bytes[9] = {static_cast<char>(0xcb)};
  std::memcpy(bytes + 1, &bits, sizeof bits);
  out.write(bytes, sizeof bytes);
}

void pack(msgpack::sbuffer& out, const Json& value) {
  Packer packer(out);
  switch (value.type()) {
    case Json::value_t::null: packer.pack_nil(); break;
    case Json::value_t::boolean: value.get<bool>() ? packer.pack_true() : packer.pack_false(); break;
    case Json::value_t::number_integer: packer.pack_int64(value.get<std::int64_t>()); break;
    case Json::value_t::number_unsigned: packer.pack_uint64(value.get<std::uint64_t>()); break;
    case Json::value_t::number_float: pack_float64(out, value.get<double>()); break;
    case Json::value_t::string: {
      const auto& text = value.get_ref<const std::string&>();
      packer.pack_str(static_cast<std::uint32_t>(text.size()));
      packer.pack_str_body(text.data(), static_cast<std::uint32_t>(text.size()));
      break;
    }
    case Json::value_t::binary: {
      const auto& bytes = value.get_binary();
      if (bytes.has_subtype()) {  // an attachment's stand-in (encode_frames)
        packer.pack_ext(bytes.size(), static_cast<std::int8_t>(bytes.subtype()));
        packer.pack_ext_body(reinterpret_cast<const char*>(bytes.data()), static_cast<std::uint32_t>(bytes.size()));
        break;
      }
      packer.pack_bin(static_cast<std::uint32_t>(bytes.size()));
      packer.pack_bin_body(reinterpret_cast<const char*>(bytes.data()), static_cast<std::uint32_t>(bytes.size()));
      break;
    }
    case Json::value_t::array:
      packer.pack_array(static_cast<std::uint32_t>(value.size()));
      for (const auto& item : value) pack(out, item);
      break;
    case Json::value_t::object:
      packer.pack_map(static_cast<std::uint32_t>(value.size()));
      for (const auto& [key, item] : value.items()) {
        packer.pack_str(static_cast<std::uint32_t>(key.size()));
        packer.pack_str_body(key.data(), static_cast<std::uint32_t>(key.size()));
        pack(out, item);
      }
      break;
    case Json::value_t::discarded: packer.pack_nil(); break;
  }
}

// Turns a decoded MessagePack value into Json, putting each attachment's bytes where its ext stands.
class Reader {
 public:
  explicit Reader(const Frames* frames = nullptr) : frames_(frames), named_(frames ? frames->size() : 0, false) {}

  Json read(const msgpack::object& object) {
    switch (object.type) {
      case msgpack::type::NIL: return nullptr;
      case msgpack::type::BOOLEAN: return object.via.boolean;
      case msgpack::type::POSITIVE_INTEGER: return object.via.u64;
      case msgpack::type::NEGATIVE_INTEGER: return object.via.i64;
      case msgpack::type::FLOAT32:
      case msgpack::type::FLOAT64: return object.via.f64;
      case msgpack::type::STR: return std::string(object.via.str.ptr, object.via.str.size);
      case msgpack::type::BIN: return bin(object.via.bin.ptr, object.via.bin.size);
      case msgpack::type::ARRAY: {
        Json array = Json::array();
        for (std::uint32_t i = 0; i < object.via.array.size; ++i) array.push_back(read(object.via.array.ptr[i]));
        return array;
      }
      case msgpack::type::MAP: {
        Json map = Json::object();
        for (std::uint32_t i = 0; i < object.via.map.size; ++i) {
          const auto& entry = object.via.map.ptr[i];
          if (entry.key.type != msgpack::type::STR) throw DecodeError("a map key is not a string");
          map[std::string(entry.key.via.str.ptr, entry.key.via.str.size)] = read(entry.val);
        }
        return map;
      }
      case msgpack::type::EXT: return attachment(object.via.ext);
    }
    throw DecodeError("unknown MessagePack type");
  }

  // Every attachment must be named once: a frame nobody names is a malformed message too.
  void check_all_named() const {
    for (std::size_t i = 1; i < named_.size(); ++i)
      if (!named_[i]) throw DecodeError("attachment frame " + std::to_string(i) + " is named nowhere in the message");
  }

 private:
  static Json bin(const char* data, std::size_t size) {
    auto begin = reinterpret_cast<const std::uint8_t*>(data);
    return Json::binary(std::vector<std::uint8_t>(begin, begin + size));
  }

  Json attachment(const msgpack::object_ext& ext) {
    if (ext.type() != kAttachmentExtType)
      throw DecodeError("MessagePack ext type " + std::to_string(ext.type()) + " is not used by the protocol");
    if (ext.size != 4) throw DecodeError("an attachment's ext holds 4 bytes (its frame number), not " + std::to_string(ext.size));
    const auto* b = reinterpret_cast<const std::uint8_t*>(ext.data());
    const std::uint32_t frame = std::uint32_t(b[0]) << 24 | std::uint32_t(b[1]) << 16 | std::uint32_t(b[2]) << 8 | b[3];
    if (frame == 0 || frame >= named_.size())
      throw DecodeError("the message names attachment frame " + std::to_string(frame) + " but has " +
                        std::to_string(named_.empty() ? 0 : named_.size() - 1) + " attachments");
    if (named_[frame]) throw DecodeError("attachment frame " + std::to_string(frame) + " is named twice");
    named_[frame] = true;
    const auto& bytes = (*frames_)[frame];
    return bin(static_cast<const char*>(bytes.data()), bytes.size());
  }

  const Frames* frames_;
  std::vector<bool> named_;
};

// Moves every large bin of `value` into a frame of its own and leaves its stand-in in its place.
void detach(Json& value, Frames& frames) {
  if (value.is_binary() && !value.get_binary().has_subtype() && value.get_binary().size() >= kAttachmentMinBytes &&
      frames.size() <= kMaxAttachments) {
    auto* bytes = new std::vector<std::uint8_t>(std::move(static_cast<std::vector<std::uint8_t>&>(value.get_binary())));
    frames.emplace_back(bytes->data(), bytes->size(),
                        [](void*, void* owner) { delete static_cast<std::vector<std::uint8_t>*>(owner); }, bytes);
    const auto n = static_cast<std::uint32_t>(frames.size() - 1);
    value = Json::binary({std::uint8_t(n >> 24), std::uint8_t(n >> 16), std::uint8_t(n >> 8), std::uint8_t(n)},
                         static_cast<std::uint8_t>(kAttachmentExtType));
  } else if (value.is_structured()) {
    for (auto& item : value) detach(item, frames);
  }
}

}  // namespace

Message Message::request(std::uint32_t id, std::string method, Json params) {
  Message m;
  m.kind = Kind::request;
  m.id = id;
  m.method = std::move(method);
  m.params = std::move(params);
  return m;
}

Message Message::response(std::uint32_t id, Json result) {
  Message m;
  m.kind = Kind::response;
  m.id = id;
  m.result = std::move(result);
  return m;
}

Message Message::error_response(std::uint32_t id, const std::string& code, const std::string& message) {
  Message m;
  m.kind = Kind::response;
  m.id = id;
  m.error = Json{{"code", code}, {"message", message}};
  return m;
}

Message Message::notification(std::string method, Json params) {
  Message m;
  m.kind = Kind::notification;
  m.method = std::move(method);
  m.params = std::move(params);
  return m;
}

Json Message::to_json() const {
  switch (kind) {
    case Kind::request: return Json::array({0, id, method, params});
    case Kind::response: return Json::array({1, id, error, result});
    case Kind::notification: return Json::array({2, method, params});
  }
  return nullptr;
}

namespace {

msgpack::sbuffer pack_envelope(const Message& message) {
  msgpack::sbuffer buffer;
  Packer packer(buffer);
  auto pack_text = [&](const std::string& text) {
    packer.pack_str(static_cast<std::uint32_t>(text.size()));
    packer.pack_str_body(text.data(), static_cast<std::uint32_t>(text.size()));
  };
  switch (message.kind) {
    case Message::Kind::request:
      packer.pack_array(4);
      packer.pack_uint8(0);
      packer.pack_uint32(message.id);
      pack_text(message.method);
      pack(buffer, message.params);
      break;
    case Message::Kind::response:
      packer.pack_array(4);
      packer.pack_uint8(1);
      packer.pack_uint32(message.id);
      pack(buffer, message.error);
      pack(buffer, message.result);
      break;
    case Message::Kind::notification:
      packer.pack_array(3);
      packer.pack_uint8(2);
      pack_text(message.method);
      pack(buffer, message.params);
      break;
  }
  return buffer;
}

}  // namespace

std::string encode(const Message& message) {
  const msgpack::sbuffer buffer = pack_envelope(message);
  return std::string(buffer.data(), buffer.size());
}

std::string encode_value(const Json& value) {
  msgpack::sbuffer buffer;
  pack(buffer, value);
  return std::string(buffer.data(), buffer.size());
}

Frames encode_frames(Message message, bool attachments) {
  Frames frames(1);
  if (attachments) {
    detach(message.params, frames);
    detach(message.result, frames);
  }
  const msgpack::sbuffer buffer = pack_envelope(message);
  frames[0] = zmq::message_t(buffer.data(), buffer.size());
  return frames;
}

namespace {

// Strings and bins are read where they lie in the frame, not copied into the unpacker's zone
// first: every one is copied once, into the Json, before the frame is released.
bool refer_in_place(msgpack::type::object_type, std::size_t, void*) { return true; }

std::uint32_t message_id(const msgpack::object& value) {
  if (value.type != msgpack::type::POSITIVE_INTEGER || value.via.u64 > 0xFFFFFFFFu)
    throw DecodeError("message id is not an unsigned 32-bit integer");
  return static_cast<std::uint32_t>(value.via.u64);
}

std::string method_name(const msgpack::object& value) {
  if (value.type != msgpack::type::STR || value.via.str.size == 0) throw DecodeError("method is not a non-empty string");
  return std::string(value.via.str.ptr, value.via.str.size);
}

msgpack::object_handle unpack(const void* data, std::size_t size) {
  try {
    // Bounded nesting: a hostile peer must not overflow our stack.
    const msgpack::unpack_limit limits(1u << 20, 1u << 20, 1u << 30, 1u << 30, 1u << 20, 64);
    return msgpack::unpack(static_cast<const char*>(data), size, refer_in_place, nullptr, limits);
  } catch (const std::exception& e) {
    throw DecodeError(std::string("not MessagePack: ") + e.what());
  }
}

Message decode_envelope(const void* data, std::size_t size, Reader& reader) {
  const msgpack::object_handle handle = unpack(data, size);
  const msgpack::object& envelope = handle.get();
  if (envelope.type != msgpack::type::ARRAY || envelope.via.array.size == 0 ||
      envelope.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER)
    throw DecodeError("not a MessagePack-RPC array [kind, ...]");
  const msgpack::object* item = envelope.via.array.ptr;
  // Says what came, not only what is expected: a peer that sends 3 elements must be told so.
  auto expect = [&](std::size_t count, const char* kind) {
    if (envelope.via.array.size != count)
      throw DecodeError(std::string("a ") + kind + " has " + std::to_string(count) + " elements, this one has " +
                        std::to_string(envelope.via.array.size));
  };
  Message m;
  switch (item[0].via.u64) {
    case 0:
      expect(4, "request");
      m = Message::request(message_id(item[1]), method_name(item[2]), reader.read(item[3]));
      break;
    case 1:
      expect(4, "response");
      m = Message::response(message_id(item[1]), reader.read(item[3]));
      m.error = reader.read(item[2]);
      break;
    case 2:
      expect(3, "notification");
      m = Message::notification(method_name(item[1]), reader.read(item[2]));
      break;
    default: throw DecodeError("message kind must be 0, 1 or 2");
  }
  reader.check_all_named();
  return m;
}

}  // namespace

Message decode(const void* data, std::size_t size) {
  Reader reader;
  return decode_envelope(data, size, reader);
}

Json decode_value(const void* data, std::size_t size) {
  const msgpack::object_handle handle = unpack(data, size);
  return Reader().read(handle.get());
}

Message decode_frames(const Frames& frames) {
  if (frames.empty()) throw DecodeError("a message with no frames");
  if (frames.size() > kMaxAttachments + 1)
    throw DecodeError("a message has " + std::to_string(frames.size() - 1) + " attachments, over the limit of " +
                      std::to_string(kMaxAttachments));
  Reader reader(&frames);
  return decode_envelope(frames[0].data(), frames[0].size(), reader);
}

Json image_to_json(Image image) {
  return Json{{"width", image.width},
              {"height", image.height},
              {"mode", image.mode},
              {"data", Json::binary(std::move(image.data))}};
}

Image image_header(const Json& json) {
  if (!json.is_object()) throw DecodeError("image is not a map");
  for (const char* field : {"width", "height", "mode", "data"})
    if (!json.contains(field)) throw DecodeError(std::string("image has no '") + field + "'");
  if (!json["width"].is_number_integer() || !json["height"].is_number_integer())
    throw DecodeError("image width and height must be integers");
  if (!json["mode"].is_string()) throw DecodeError("image mode must be a string");
  if (!json["data"].is_binary()) throw DecodeError("image data must be MessagePack bin");
  Image image;
  image.width = json["width"].get<int>();
  image.height = json["height"].get<int>();
  image.mode = json["mode"].get<std::string>();
  if (image.mode != "RGB" && image.mode != "RGBA" && image.mode != "L")
    throw DecodeError("image mode '" + image.mode + "' is not RGB, RGBA or L");
  if (image.width <= 0 || image.height <= 0 || image.width > 16384 || image.height > 16384)
    throw DecodeError("image size " + std::to_string(image.width) + "x" + std::to_string(image.height) + " is out of range");
  const auto bytes = json["data"].get_binary().size();
  if (bytes != image.expected_size())
    throw DecodeError("image data has " + std::to_string(bytes) + " bytes, " + image.mode + " " +
                      std::to_string(image.width) + "x" + std::to_string(image.height) + " needs " +
                      std::to_string(image.expected_size()));
  return image;
}

Image image_from_json(Json json) {
  Image image = image_header(json);
  image.data = std::move(static_cast<std::vector<std::uint8_t>&>(json["data"].get_binary()));
  return image;
}

namespace {

// An image value, inline or in the region: what the image-region functions act on, wherever it
// stands in a message (one image, a list of them, a method's samples).
bool is_image(const Json& value) {
  return value.is_object() && value.contains("width") && value.contains("height") && value.contains("mode") &&
         (value.contains("data") || value.contains("slot"));
}

template <class AnyJson, class Visit>  // Json or const Json
void for_each_image(AnyJson& value, const Visit& visit) {
  if (is_image(value)) return visit(value);
  if (value.is_structured())
    for (auto& item : value) for_each_image(item, visit);
}

std::int64_t slot_field(const Json& slot, const char* field) {
  if (!slot.is_object() || !slot.contains(field) || !slot[field].is_number_integer() || slot[field].get<std::int64_t>() < 0)
    throw DecodeError(std::string("an image's slot needs a non-negative integer '") + field + "'");
  return slot[field].get<std::int64_t>();
}

// Where the next image starts: cache-line aligned, so that neither side pays for a split line.
constexpr std::size_t kImageAlignment = 64;

}  // namespace

std::optional<int> image_slot_index(const Json& value) {
  std::optional<int> index;
  for_each_image(value, [&](const Json& image) {
    if (!index && image.contains("slot")) index = int(slot_field(image["slot"], "index"));
  });
  return index;
}

std::size_t images_to_slot(Json& value, const RegionSlot& slot) {
  std::size_t used = 0, moved = 0;
  for_each_image(value, [&](Json& image) {
    if (!image.contains("data") || !image["data"].is_binary()) return;
    const auto& pixels = image["data"].get_binary();
    const std::size_t at = (used + kImageAlignment - 1) / kImageAlignment * kImageAlignment;
    if (at + pixels.size() > slot.bytes) return;
    std::memcpy(slot.data + at, pixels.data(), pixels.size());
    image["slot"] = {{"index", slot.index}, {"offset", at}, {"bytes", pixels.size()}};
    image.erase("data");
    used = at + pixels.size();
    ++moved;
  });
  return moved;
}

void images_from_slot(Json& value, const RegionSlot& slot) {
  for_each_image(value, [&](Json& image) {
    if (!image.contains("slot")) return;
    if (image.contains("data")) throw DecodeError("an image has both 'data' and 'slot'");
    const Json& where = image["slot"];
    const std::int64_t index = slot_field(where, "index"), offset = slot_field(where, "offset"),
                       bytes = slot_field(where, "bytes");
    if (index != slot.index)
      throw DecodeError("an image lies in slot " + std::to_string(index) + ", not in the slot lent with this request (" +
                        std::to_string(slot.index) + ")");
    if (std::uint64_t(offset) + std::uint64_t(bytes) > slot.bytes)
      throw DecodeError("an image's bytes " + std::to_string(offset) + ".." + std::to_string(offset + bytes) +
                        " are outside its slot of " + std::to_string(slot.bytes));
    const std::uint8_t* from = slot.data + offset;
    image["data"] = Json::binary(std::vector<std::uint8_t>(from, from + bytes));
    image.erase("slot");
  });
}

Channel::Channel(zmq::context_t& context, const std::string& endpoint, bool bind, std::int64_t max_message_bytes,
                 const std::string& token, const std::string& zap_domain)
    : socket_(context, zmq::socket_type::dealer) {
  socket_.set(zmq::sockopt::linger, 0);
  if (max_message_bytes > 0) socket_.set(zmq::sockopt::maxmsgsize, max_message_bytes);
  if (bind && !zap_domain.empty()) {
    if (!token.empty()) socket_.set(zmq::sockopt::plain_server, 1);
    socket_.set(zmq::sockopt::zap_domain, zap_domain);
  } else if (!bind && !token.empty()) {
    socket_.set(zmq::sockopt::plain_username, kPlainUser);
    socket_.set(zmq::sockopt::plain_password, token);
  }
  if (bind)
    socket_.bind(endpoint);
  else
    socket_.connect(endpoint);
}

void Channel::send(Message message, bool attachments) {
  auto frames = encode_frames(std::move(message), attachments);
  zmq::send_multipart(socket_, frames);
}

std::optional<Message> Channel::receive(std::chrono::milliseconds timeout) {
  // With no time to wait, no poll either: a reader draining the socket would pay a syscall per message.
  zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
  if (timeout.count() > 0 && zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
  Frames frames;
  if (!zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait)) return std::nullopt;
  return decode_frames(frames);
}

}  // namespace bulkhead::wire
