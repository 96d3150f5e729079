#include <bulkhead/wire.hpp>

#include <msgpack.hpp>

namespace bulkhead::wire {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

void pack(Packer& packer, const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: packer.pack_nil(); break;
    case Json::value_t::boolean: value.get<bool>() ? packer.pack_true() : packer.pack_false(); break;
    case Json::value_t::number_integer: packer.pack_int64(value.get<std::int64_t>()); break;
    case Json::value_t::number_unsigned: packer.pack_uint64(value.get<std::uint64_t>()); break;
    case Json::value_t::number_float: packer.pack_double(value.get<double>()); break;
    case Json::value_t::string: {
      const auto& text = value.get_ref<const std::string&>();
      packer.pack_str(static_cast<std::uint32_t>(text.size()));
      packer.pack_str_body(text.data(), static_cast<std::uint32_t>(text.size()));
      break;
    }
    case Json::value_t::binary: {
      const auto& bytes = value.get_binary();
      packer.pack_bin(static_cast<std::uint32_t>(bytes.size()));
      packer.pack_bin_body(reinterpret_cast<const char*>(bytes.data()), static_cast<std::uint32_t>(bytes.size()));
      break;
    }
    case Json::value_t::array:
      packer.pack_array(static_cast<std::uint32_t>(value.size()));
      for (const auto& item : value) pack(packer, item);
      break;
    case Json::value_t::object:
      packer.pack_map(static_cast<std::uint32_t>(value.size()));
      for (const auto& [key, item] : value.items()) {
        packer.pack_str(static_cast<std::uint32_t>(key.size()));
        packer.pack_str_body(key.data(), static_cast<std::uint32_t>(key.size()));
        pack(packer, item);
      }
      break;
    case Json::value_t::discarded: packer.pack_nil(); break;
  }
}

Json to_json(const msgpack::object& object) {
  switch (object.type) {
    case msgpack::type::NIL: return nullptr;
    case msgpack::type::BOOLEAN: return object.via.boolean;
    case msgpack::type::POSITIVE_INTEGER: return object.via.u64;
    case msgpack::type::NEGATIVE_INTEGER: return object.via.i64;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return object.via.f64;
    case msgpack::type::STR: return std::string(object.via.str.ptr, object.via.str.size);
    case msgpack::type::BIN: {
      auto begin = reinterpret_cast<const std::uint8_t*>(object.via.bin.ptr);
      return Json::binary(std::vector<std::uint8_t>(begin, begin + object.via.bin.size));
    }
    case msgpack::type::ARRAY: {
      Json array = Json::array();
      for (std::uint32_t i = 0; i < object.via.array.size; ++i) array.push_back(to_json(object.via.array.ptr[i]));
      return array;
    }
    case msgpack::type::MAP: {
      Json map = Json::object();
      for (std::uint32_t i = 0; i < object.via.map.size; ++i) {
        const auto& entry = object.via.map.ptr[i];
        if (entry.key.type != msgpack::type::STR) throw DecodeError("a map key is not a string");
        map[std::string(entry.key.via.str.ptr, entry.key.via.str.size)] = to_json(entry.val);
      }
      return map;
    }
    case msgpack::type::EXT: throw DecodeError("MessagePack ext types are not used by the protocol");
  }
  throw DecodeError("unknown MessagePack type");
}

std::uint32_t message_id(const Json& value) {
  if (!value.is_number_unsigned() || value.get<std::uint64_t>() > 0xFFFFFFFFu)
    throw DecodeError("message id is not an unsigned 32-bit integer");
  return value.get<std::uint32_t>();
}

std::string method_name(const Json& value) {
  if (!value.is_string() || value.get_ref<const std::string&>().empty()) throw DecodeError("method is not a non-empty string");
  return value.get<std::string>();
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

std::string encode(const Message& message) {
  msgpack::sbuffer buffer;
  Packer packer(buffer);
  pack(packer, message.to_json());
  return std::string(buffer.data(), buffer.size());
}

Message decode(const void* data, std::size_t size) {
  Json envelope;
  try {
    // Bounded nesting: a hostile peer must not overflow our stack.
    const msgpack::unpack_limit limits(1u << 20, 1u << 20, 1u << 30, 1u << 30, 1u << 20, 64);
    auto handle = msgpack::unpack(static_cast<const char*>(data), size, nullptr, nullptr, limits);
    envelope = to_json(handle.get());
  } catch (const DecodeError&) {
    throw;
  } catch (const std::exception& e) {
    throw DecodeError(std::string("not MessagePack: ") + e.what());
  }
  if (!envelope.is_array() || envelope.empty() || !envelope[0].is_number_unsigned())
    throw DecodeError("not a MessagePack-RPC array [kind, ...]");
  // Says what came, not only what is expected: a peer that sends 3 elements must be told so.
  auto expect = [&](std::size_t size, const char* kind) {
    if (envelope.size() != size)
      throw DecodeError(std::string("a ") + kind + " has " + std::to_string(size) + " elements, this one has " +
                        std::to_string(envelope.size()));
  };
  Message m;
  switch (envelope[0].get<int>()) {
    case 0:
      expect(4, "request");
      m = Message::request(message_id(envelope[1]), method_name(envelope[2]), envelope[3]);
      break;
    case 1:
      expect(4, "response");
      m = Message::response(message_id(envelope[1]), envelope[3]);
      m.error = envelope[2];
      break;
    case 2:
      expect(3, "notification");
      m = Message::notification(method_name(envelope[1]), envelope[2]);
      break;
    default: throw DecodeError("message kind must be 0, 1 or 2");
  }
  return m;
}

Json image_to_json(Image image) {
  return Json{{"width", image.width},
              {"height", image.height},
              {"mode", image.mode},
              {"data", Json::binary(std::move(image.data))}};
}

Image image_from_json(const Json& json) {
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
  const auto& bytes = json["data"].get_binary();
  if (bytes.size() != image.expected_size())
    throw DecodeError("image data has " + std::to_string(bytes.size()) + " bytes, " + image.mode + " " +
                      std::to_string(image.width) + "x" + std::to_string(image.height) + " needs " +
                      std::to_string(image.expected_size()));
  image.data.assign(bytes.begin(), bytes.end());
  return image;
}

Channel::Channel(zmq::context_t& context, const std::string& endpoint, bool bind, std::int64_t max_message_bytes,
                 const std::string& token, const std::string& zap_domain)
    : socket_(context, zmq::socket_type::dealer) {
  socket_.set(zmq::sockopt::linger, 0);
  if (max_message_bytes > 0) socket_.set(zmq::sockopt::maxmsgsize, max_message_bytes);
  if (bind && !zap_domain.empty()) {
    socket_.set(zmq::sockopt::plain_server, 1);
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

void Channel::send(const Message& message) {
  const std::string bytes = encode(message);
  socket_.send(zmq::buffer(bytes), zmq::send_flags::none);
}

std::optional<zmq::message_t> Channel::receive_raw(std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
  zmq::message_t frame;
  if (!socket_.recv(frame, zmq::recv_flags::dontwait)) return std::nullopt;
  // A multi-frame message is not part of the protocol: drain its other frames and report it.
  if (frame.more()) {
    zmq::message_t rest;
    while (socket_.get(zmq::sockopt::rcvmore) && socket_.recv(rest, zmq::recv_flags::dontwait)) {}
    throw DecodeError("a message must be exactly one frame");
  }
  return frame;
}

std::optional<Message> Channel::receive(std::chrono::milliseconds timeout) {
  auto frame = receive_raw(timeout);
  if (!frame) return std::nullopt;
  return decode(frame->data(), frame->size());
}

}  // namespace bulkhead::wire
