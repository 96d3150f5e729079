// bulkhead/plugin.hpp — the one header a C++ plugin author includes.
//
// A plugin is a class that overrides the hooks it wants (EveryDream2's names),
// exported with one macro:
//
//   #include <bulkhead/plugin.hpp>
//   struct Shout : bulkhead::Plugin {
//     std::string transform_caption(const std::string& c) override { return c + "!"; }
//   };
//   BULKHEAD_PLUGIN(Shout, "shout", "1.0.0", "Adds an exclamation mark to every caption")
//
// The plugin runs inside bulkhead-plugin-host, in its own jailed process; the
// host turns protocol messages into these calls. Nothing here speaks ZeroMQ.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace bulkhead {

using Json = nlohmann::json;

// An 8-bit image, row-major. mode is "RGB" (3 channels), "RGBA" (4) or "L" (1).
struct Image {
  int width = 0;
  int height = 0;
  std::string mode = "RGB";
  std::vector<std::uint8_t> data;

  static int channels(const std::string& mode) { return mode == "RGBA" ? 4 : mode == "L" ? 1 : 3; }
  int channels() const { return channels(mode); }
  std::size_t expected_size() const { return std::size_t(width) * std::size_t(height) * std::size_t(channels()); }
};

// The keyword arguments of an observer hook, with typed access:
//   int epoch = kwargs.get<int>("epoch");
class Kwargs {
 public:
  explicit Kwargs(Json values) : values_(std::move(values)) {}
  bool has(const std::string& name) const { return values_.is_object() && values_.contains(name); }
  template <typename T>
  T get(const std::string& name) const { return values_.at(name).get<T>(); }
  template <typename T>
  T get(const std::string& name, T fallback) const { return has(name) ? get<T>(name) : fallback; }
  const Json& json() const { return values_; }

 private:
  Json values_;
};

// What a plugin may ask of the trainer and of its host. Control requests are
// sent with the reply of the hook being served (or at once, outside a hook).
class Context {
 public:
  virtual ~Context() = default;
  virtual const Json& options() const = 0;             // manifest defaults overlaid with train.json
  virtual void log(const std::string& level, const std::string& message) = 0;  // "debug" | "info" | "warning" | "error"
  virtual void request_stop(const std::string& reason) = 0;
  virtual void request_checkpoint(const std::string& tag, const std::string& reason) = 0;
  // Deletes a checkpoint the trainer saved on this plugin's request (on_checkpoint_saved's path).
  virtual void request_checkpoint_removal(const std::string& path, const std::string& reason) = 0;
  virtual void set_arg(const std::string& name, const Json& value) = 0;  // e.g. set_arg("grad_accum", 4)
};

// Throw from a hook to report a failure; the host turns it into an error reply.
struct HookError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Override what you need; every default passes its input through untouched.
class Plugin {
 public:
  virtual ~Plugin() = default;

  virtual void on_training_start(const Kwargs&) {}
  virtual void on_epoch_start(const Kwargs&) {}
  virtual void on_step_start(const Kwargs&) {}
  virtual void on_step_end(const Kwargs&) {}
  virtual void on_epoch_end(const Kwargs&) {}
  virtual void on_training_end(const Kwargs&) {}
  virtual void on_checkpoint_saved(const Kwargs&) {}
  virtual void on_validation_end(const Kwargs&) {}
  virtual void on_log(const Kwargs&) {}
  virtual std::string transform_caption(const std::string& caption) { return caption; }
  virtual Image transform_pil_image(Image image) { return image; }
  // Model access (manifest permissions.model_access, docs/protocol.md section 9): sent only to a
  // plugin granted it; what they return is the reply (null: nothing asked).
  virtual Json on_model_load(const Kwargs&) { return nullptr; }
  virtual Json on_model_step(const Kwargs&) { return nullptr; }
  virtual Json on_model_save(const Kwargs&) { return nullptr; }

  // Plugin state, kept across restarts, reloads and resumes: override both. get_state returns
  // plain data; set_state takes back what it returned, or throws to refuse it (the plugin then
  // starts empty).
  virtual Json get_state() { return nullptr; }
  virtual void set_state(const Json& /*state*/) {}

  // Fine-tuning methods (manifest "provides": "method"; docs/methods.md). The Json ones return the
  // hook's result, as schemas/hooks.json describes it.
  virtual Json describe_method(const Kwargs&) { return Json::object(); }
  virtual Json suggest_trial(const Kwargs&) { return Json::object(); }
  virtual void on_trial_start(const Kwargs&) {}
  virtual void on_trial_end(const Kwargs&) {}
  virtual Json evaluate(const Kwargs&) { return Json::object(); }
  virtual void on_study_end(const Kwargs&) {}

  // Called once, after the handshake, before any hook. options() is ready here.
  virtual void configure() {}

  Context& context() { return *context_; }
  const Context& context() const { return *context_; }
  void attach(Context* context) { context_ = context; }

 private:
  Context* context_ = nullptr;
};

// What the host learns from a plugin library: meta, the hooks the class
// overrides (found at compile time), and a factory.
struct PluginExport {
  int abi_version;
  const char* name;
  const char* version;
  const char* description;
  std::vector<std::string> (*hooks)();
  Plugin* (*create)();
};
// Raised whenever Plugin's virtual methods or PluginExport change: a library built against
// another layout is refused at load (plugin-host/src/cpp_loader.cpp), not called through a wrong vtable.
inline constexpr int kPluginAbiVersion = 2;
inline constexpr const char* kPluginExportSymbol = "bulkhead_plugin_export_v1";

// Every hook, in schemas/hooks.json's order (tests/protocol/catalogue_test.cpp holds them
// together), with its kind: how the host calls it and turns its return into a reply.
//   observe:  void f(const Kwargs&), replies {}
//   value:    Json f(const Kwargs&), a method's hook whose value (hooks.json: returns_value), an object, is the reply
//   model:    Json f(const Kwargs&), a model hook whose null return means "nothing asked"
//   own:      a signature of its own (captions, images, the state pair)
// A name here that is not a Plugin member does not compile.
#define BULKHEAD_HOOKS(X)          \
  X(observe, on_training_start)  \
  X(observe, on_epoch_start)     \
  X(observe, on_step_start)      \
  X(observe, on_step_end)        \
  X(observe, on_epoch_end)       \
  X(observe, on_training_end)    \
  X(observe, on_checkpoint_saved)\
  X(observe, on_validation_end)  \
  X(observe, on_log)             \
  X(own, get_state)              \
  X(own, set_state)              \
  X(own, transform_caption)      \
  X(own, transform_pil_image)    \
  X(value, describe_method)      \
  X(value, suggest_trial)        \
  X(observe, on_trial_start)     \
  X(observe, on_trial_end)       \
  X(value, evaluate)             \
  X(observe, on_study_end)       \
  X(model, on_model_load)        \
  X(model, on_model_step)        \
  X(model, on_model_save)

// Every hook this SDK knows, in BULKHEAD_HOOKS's order.
#define BULKHEAD_DETAIL_NAME(kind, hook) #hook,
inline const std::vector<std::string>& known_hooks() {
  static const std::vector<std::string> names = {BULKHEAD_HOOKS(BULKHEAD_DETAIL_NAME)};
  return names;
}
#undef BULKHEAD_DETAIL_NAME

namespace detail {
// &Derived::f has type `R (Derived::*)(A)` only when Derived declares f itself.
#define BULKHEAD_DETAIL_ADD_IF_OVERRIDDEN(kind, hook) \
  if constexpr (!std::is_same_v<decltype(&Class::hook), decltype(&::bulkhead::Plugin::hook)>) hooks.emplace_back(#hook);

template <typename Class>
std::vector<std::string> overridden_hooks() {
  std::vector<std::string> hooks;
  BULKHEAD_HOOKS(BULKHEAD_DETAIL_ADD_IF_OVERRIDDEN)
  return hooks;
}
#undef BULKHEAD_DETAIL_ADD_IF_OVERRIDDEN
}  // namespace detail

}  // namespace bulkhead

// Exports Class as this library's plugin.
#define BULKHEAD_PLUGIN(Class, name, version, description)                                  \
  extern "C" __attribute__((visibility("default"))) const ::bulkhead::PluginExport*        \
  bulkhead_plugin_export_v1() {                                                           \
    static const ::bulkhead::PluginExport exported{                                       \
        ::bulkhead::kPluginAbiVersion, name, version, description,                        \
        &::bulkhead::detail::overridden_hooks<Class>,                                     \
        []() -> ::bulkhead::Plugin* { return new Class(); }};                             \
    return &exported;                                                                     \
  }
