// supervised_plugin_parts.hpp — private to the SupervisedPlugin's files (supervised_plugin*.cpp):
// one start of a host (Generation) and the helpers more than one of those files needs.
#pragma once

#include <endian.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>

#include "common/schemas.hpp"
#include "supervisor/supervised_plugin.hpp"

namespace bulkhead {
namespace supervised_parts {

using Clock = std::chrono::steady_clock;

constexpr int kExitLoadFailure = 78;

// What check_reply needs of what a hook was sent: the image's shape, the region slot lent with it.
// Not the pixels, which went to the plugin without a copy.
inline Json image_shape(const Json& image) {
  Json shape = Json::object();
  if (image.is_object())
    for (const char* key : {"width", "height", "mode"})
      if (image.contains(key)) shape[key] = image[key];
  return shape;
}

// The transforms whose params carry images (schemas/hooks.json: a $ref to
// protocol/image.schema.json): the hooks whose pixels may travel through the host's image region.
// Only transforms: the SDKs hand other hooks' images (a method's samples) to the plugin as the wire
// has them.
inline bool takes_images(const std::string& hook) {
  static const std::set<std::string> hooks = [] {
    std::set<std::string> with_images;
    for (const auto& [name, spec] : Schemas::instance().hook_catalogue()["hooks"].items())
      if (spec.value("kind", "") == "transform" && spec.contains("params") &&
          spec["params"].dump().find("image.schema.json") != std::string::npos)
        with_images.insert(name);
    return with_images;
  }();
  return hooks.count(hook) > 0;
}

// The region slot a model hook's request lends the plugin: where its tensors are. A notify hook's
// reply is judged without its params; its conclusion gets {"lent_slot": n} instead.
inline std::optional<int> lent_slot(const Json& params) {
  if (params.contains("lent_slot")) return params["lent_slot"].get<int>();
  if (!params.contains("tensors")) return std::nullopt;
  for (const auto& tensor : params["tensors"])
    if (tensor["tensor"].contains("slot")) return tensor["tensor"]["slot"]["index"].get<int>();
  return std::nullopt;
}

// A quarantine reason is one line, for the console and the run report; the traceback that may
// follow a fault's message is in train.log already.
inline std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// The host exited 78 before its hello (bad library, import error), or its hello cannot be
// accepted (another protocol version, a wrong token, out of schema): starting it again will not help, so the plugin is
// quarantined at once instead of restarted, and at the first start training does not begin.
struct LoadFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace supervised_parts

// One start of the host: the process and its connection. Replaced whole on restart.
struct SupervisedPlugin::Generation {
  int number = 0;
  std::unique_ptr<PluginHost> process;  // a HostProcess, or a RemoteHost
  // The connection's I/O thread reads the process through this, set once the process exists.
  std::atomic<PluginHost*> started_process{nullptr};
  // Its BULKHEAD_SERVING word: one slot of 8 bytes, the host's for its life, which it writes and
  // the trainer only reads (so a hostile host can blame only its own requests).
  SharedRegion serving_word{1, 8};
  // Declared after the process and the serving word, so destroyed first: its I/O thread, which
  // reads both when the host dies, never outlives them.
  std::unique_ptr<Connection> connection;
  supervised_parts::Clock::time_point started = supervised_parts::Clock::now();
  bool dead = false;  // killed or exited: calls skip it until it is replaced
  bool maps_images = false;  // its hello says "image_region": true, and it was handed one

  std::uint32_t serving() {
    const auto* word = reinterpret_cast<const std::uint32_t*>(serving_word.reply_slot(0).data);
    return le32toh(__atomic_load_n(word, __ATOMIC_ACQUIRE));
  }
};

}  // namespace bulkhead
