#include <bulkhead/serve.hpp>

#include <endian.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <utility>

#include <bulkhead/wire.hpp>

namespace bulkhead {
namespace {

using wire::Message;

std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') throw std::runtime_error(std::string(name) + " is not set");
  return value;
}

// The Context a plugin sees: options from the welcome, control requests gathered for the next reply.
class ServeContext final : public Context {
 public:
  explicit ServeContext(wire::Channel& channel) : channel_(channel) {}

  const Json& options() const override { return options_; }
  void log(const std::string& level, const std::string& message) override {
    channel_.send(Message::notification("log", {{"level", level}, {"message", message}}));
  }
  void request_stop(const std::string& reason) override { control_.push_back({{"action", "stop"}, {"reason", reason}}); }
  void request_checkpoint(const std::string& tag, const std::string& reason) override {
    control_.push_back({{"action", "save_checkpoint"}, {"tag", tag}, {"reason", reason}});
  }
  void request_checkpoint_removal(const std::string& path, const std::string& reason) override {
    control_.push_back({{"action", "delete_checkpoint"}, {"path", path}, {"reason", reason}});
  }
  void set_arg(const std::string& name, const Json& value) override {
    control_.push_back({{"action", "set_arg"}, {"name", name}, {"value", value}});
  }

  void set_options(Json options) { options_ = std::move(options); }
  // The control requests made since the last call, handed to the reply being built.
  Json take_control() { return std::exchange(control_, Json::array()); }

 private:
  wire::Channel& channel_;
  Json options_ = Json::object();
  Json control_ = Json::array();
};

// The host's image region (docs/protocol.md, section 2.2), mapped as the trainer handed it:
// requests read-only (the trainer sealed them against writes), replies read-write.
class ImageRegion {
 public:
  // Null when the trainer handed none, or it cannot be mapped (pixels then travel in the message).
  static std::unique_ptr<ImageRegion> from_environment() {
    const char* spec = std::getenv(wire::kImageRegionVariable);
    int requests = -1, replies = -1;
    std::size_t slots = 0, slot_bytes = 0;
    if (spec == nullptr || std::sscanf(spec, "%d %d %zu %zu", &requests, &replies, &slots, &slot_bytes) != 4) return nullptr;
    auto region = std::unique_ptr<ImageRegion>(new ImageRegion(slots, slot_bytes));
    region->requests_ = map(requests, slots * slot_bytes, PROT_READ);
    region->replies_ = map(replies, slots * slot_bytes, PROT_READ | PROT_WRITE);
    if (!region->requests_ || !region->replies_) return nullptr;
    return region;
  }
  ~ImageRegion() {
    for (auto* base : {requests_, replies_})
      if (base) ::munmap(base, slots_ * slot_bytes_);
  }

  // A request's images are copied out of the slot it names, and its reply's go into the same slot.
  std::optional<int> take_request_images(Json& params) const {
    const auto index = wire::image_slot_index(params);
    if (!index) return std::nullopt;
    if (*index < 0 || std::size_t(*index) >= slots_)
      throw wire::DecodeError("an image lies in slot " + std::to_string(*index) + " of " + std::to_string(slots_));
    wire::images_from_slot(params, slot(requests_, *index));
    return index;
  }
  void place_reply_images(Json& result, int index) const { wire::images_to_slot(result, slot(replies_, index)); }

 private:
  ImageRegion(std::size_t slots, std::size_t slot_bytes) : slots_(slots), slot_bytes_(slot_bytes) {}
  static std::uint8_t* map(int fd, std::size_t bytes, int protection) {
    void* base = ::mmap(nullptr, bytes, protection, MAP_SHARED, fd, 0);
    return base == MAP_FAILED ? nullptr : static_cast<std::uint8_t*>(base);
  }
  wire::RegionSlot slot(std::uint8_t* base, int index) const {
    return {index, base + std::size_t(index) * slot_bytes_, slot_bytes_};
  }

  std::size_t slots_, slot_bytes_;
  std::uint8_t* requests_ = nullptr;
  std::uint8_t* replies_ = nullptr;
};

// The host's serving word (wire.hpp, kServingVariable): the id of each request goes there before
// it is served, so that a crash is blamed on the request that caused it.
class ServingWord {
 public:
  ServingWord() {
    const char* spec = std::getenv(wire::kServingVariable);
    if (spec == nullptr) return;
    void* base = ::mmap(nullptr, 8, PROT_READ | PROT_WRITE, MAP_SHARED, std::atoi(spec), 0);
    if (base != MAP_FAILED) word_ = static_cast<std::uint32_t*>(base);
  }
  ~ServingWord() {
    if (word_) ::munmap(word_, 8);
  }
  ServingWord(const ServingWord&) = delete;
  ServingWord& operator=(const ServingWord&) = delete;

  void serving(std::uint32_t id) {
    if (word_) __atomic_store_n(word_, htole32(id), __ATOMIC_RELEASE);
  }

 private:
  std::uint32_t* word_ = nullptr;
};

bool parent_alive(int parent_pid) {
  if (parent_pid <= 0) return true;
  // EPERM: it exists, but the jail (Landlock's signal scope) forbids signalling it.
  return getppid() == parent_pid || kill(parent_pid, 0) == 0 || errno == EPERM;
}

// How each kind of hook (plugin.hpp's BULKHEAD_HOOKS) is called; the result is the hook's reply
// body without control.
Kwargs kwargs(const Json& params) { return Kwargs(params.is_null() ? Json::object() : params); }

Json observe(Plugin& plugin, void (Plugin::*hook)(const Kwargs&), const std::string&, Json& params) {
  (plugin.*hook)(kwargs(params));
  return Json::object();
}

Json value(Plugin& plugin, Json (Plugin::*hook)(const Kwargs&), const std::string& method, Json& params) {
  Json result = (plugin.*hook)(kwargs(params));
  if (!result.is_object()) throw std::runtime_error(method + " returned " + std::string(result.type_name()) + ", not an object");
  return result;
}

Json model(Plugin& plugin, Json (Plugin::*hook)(const Kwargs&), const std::string&, Json& params) {
  Json result = (plugin.*hook)(kwargs(params));
  return result.is_null() ? Json::object() : result;
}

// The hooks of their own signature, told apart by it.
Json own(Plugin& plugin, std::string (Plugin::*hook)(const std::string&), const std::string&, Json& params) {
  if (!params.is_object() || !params.contains("caption") || !params["caption"].is_string())
    throw wire::DecodeError("transform_caption needs params {caption: str}");
  return {{"caption", (plugin.*hook)(params["caption"].get<std::string>())}};
}

Json own(Plugin& plugin, Image (Plugin::*hook)(Image), const std::string&, Json& params) {
  if (!params.is_object() || !params.contains("image")) throw wire::DecodeError("transform_pil_image needs params {image}");
  return {{"image", wire::image_to_json((plugin.*hook)(wire::image_from_json(std::move(params["image"]))))}};
}

// A batched transform's return: one item per item sent.
template <typename Item>
std::vector<Item> batch_result(const std::string& method, std::vector<Item> out, std::size_t count) {
  if (out.size() != count)
    throw std::runtime_error(method + " returned " + std::to_string(out.size()) + " items for " + std::to_string(count));
  return out;
}

Json own(Plugin& plugin, std::vector<std::string> (Plugin::*hook)(std::vector<std::string>), const std::string& method,
         Json& params) {
  if (!params.is_object() || !params.contains("captions") || !params["captions"].is_array())
    throw wire::DecodeError("transform_captions needs params {captions: [str]}");
  std::vector<std::string> captions;
  for (auto& caption : params["captions"]) {
    if (!caption.is_string()) throw wire::DecodeError("transform_captions needs params {captions: [str]}");
    captions.push_back(std::move(caption.get_ref<std::string&>()));
  }
  const std::size_t count = captions.size();
  return {{"captions", batch_result(method, (plugin.*hook)(std::move(captions)), count)}};
}

Json own(Plugin& plugin, std::vector<Image> (Plugin::*hook)(std::vector<Image>), const std::string& method, Json& params) {
  if (!params.is_object() || !params.contains("images") || !params["images"].is_array())
    throw wire::DecodeError("transform_pil_images needs params {images: [image]}");
  std::vector<Image> images;
  for (auto& image : params["images"]) images.push_back(wire::image_from_json(std::move(image)));
  const std::size_t count = images.size();
  Json out = Json::array();
  for (auto& image : batch_result(method, (plugin.*hook)(std::move(images)), count))
    out.push_back(wire::image_to_json(std::move(image)));
  return {{"images", std::move(out)}};
}

Json own(Plugin& plugin, Json (Plugin::*hook)(), const std::string&, Json&) { return {{"state", (plugin.*hook)()}}; }

Json own(Plugin& plugin, void (Plugin::*hook)(const Json&), const std::string&, Json& params) {
  if (!params.is_object() || !params.contains("state")) throw wire::DecodeError("set_state needs params {state, global_step}");
  (plugin.*hook)(params["state"]);
  return Json::object();
}

// Runs one hook; an unknown one throws std::out_of_range. An image in params is moved to the plugin.
Json dispatch(Plugin& plugin, const std::string& method, Json& params) {
  using Call = Json (*)(Plugin&, const std::string&, Json&);
#define BULKHEAD_SERVE_CALL(kind, hook) \
  {#hook, [](Plugin& plugin, const std::string& method, Json& params) { return kind(plugin, &Plugin::hook, method, params); }},
  static const std::map<std::string, Call> calls = {BULKHEAD_HOOKS(BULKHEAD_SERVE_CALL)};
#undef BULKHEAD_SERVE_CALL
  return calls.at(method)(plugin, method, params);
}

Message answer(Plugin& plugin, ServeContext& context, const ImageRegion* images, Message request) {
  try {
    const auto image_slot = images ? images->take_request_images(request.params) : std::nullopt;
    Json result = dispatch(plugin, request.method, request.params);
    if (image_slot) images->place_reply_images(result, *image_slot);
    Json control = context.take_control();
    if (!control.empty()) result["control"] = std::move(control);
    if (result.empty()) result = nullptr;
    return Message::response(request.id, std::move(result));
  } catch (const std::out_of_range&) {
    return Message::error_response(request.id, "unknown_method", "this plugin has no method '" + request.method + "'");
  } catch (const wire::DecodeError& e) {
    return Message::error_response(request.id, "bad_params", e.what());
  } catch (const std::exception& e) {
    context.take_control();
    return Message::error_response(request.id, "hook_failed", request.method + ": " + e.what());
  }
}

}  // namespace

ServeOptions ServeOptions::from_environment() {
  ServeOptions options;
  options.endpoint = required_env("BULKHEAD_ENDPOINT");
  options.token = required_env("BULKHEAD_TOKEN");
  if (const char* parent = std::getenv("BULKHEAD_PARENT_PID")) options.parent_pid = std::atoi(parent);
  return options;
}

int serve(Plugin& plugin, const PluginMeta& meta, const ServeOptions& options) {
  zmq::context_t zmq_context(1);
  wire::Channel channel(zmq_context, options.endpoint, /*bind=*/false, -1, options.token);
  ServeContext context(channel);
  plugin.attach(&context);
  const auto images = ImageRegion::from_environment();
  ServingWord serving;

  channel.send(Message::request(0, "hello",
                                {{"protocol", wire::kProtocolVersion},
                                 {"token", options.token},
                                 {"plugin", {{"name", meta.name}, {"version", meta.version}, {"description", meta.description}}},
                                 {"hooks", meta.hooks},
                                 {"runtime", {{"name", "cpp"}, {"version", __VERSION__}}},
                                 {"pid", getpid()},
                                 {"attachments", true},
                                 {"image_region", images != nullptr}}));
  bool welcomed = false;
  while (parent_alive(options.parent_pid)) {
    std::optional<Message> message;
    try {
      message = channel.receive(std::chrono::milliseconds(250));
    } catch (const wire::DecodeError& e) {
      std::cerr << "bulkhead: ignoring a malformed message from the trainer: " << e.what() << std::endl;
      continue;
    }
    if (!message) continue;
    if (message->is_notification() && message->method == "shutdown") return 0;
    if (!welcomed) {
      if (!message->is_response() || message->id != 0) continue;
      if (!message->error.is_null()) {
        std::cerr << "bulkhead: the trainer refused the handshake: " << message->error.value("message", message->error.dump())
                  << std::endl;
        return 1;
      }
      if (message->result.value("protocol", 0) != wire::kProtocolVersion) {
        std::cerr << "bulkhead: the trainer speaks protocol " << message->result.value("protocol", Json()).dump()
                  << ", this SDK speaks " << wire::kProtocolVersion << std::endl;
        return 1;
      }
      context.set_options(message->result.value("options", Json::object()));
      try {
        plugin.configure();
      } catch (const std::exception& e) {
        context.log("error", meta.name + ": configure() failed: " + e.what());
        return 78;
      }
      welcomed = true;
      continue;
    }
    if (!message->is_request()) continue;
    serving.serving(message->id);
    channel.send(answer(plugin, context, images.get(), std::move(*message)));
  }
  return 0;
}

}  // namespace bulkhead
