// supervised_plugin_images.cpp — a transform's pixels in the host's image region (docs/protocol.md,
// section 2.2): placed in a lent slot on the way out, copied out once on the way back.
#include "supervisor/supervised_plugin_parts.hpp"

#include <bulkhead/wire.hpp>

namespace bulkhead {
using namespace supervised_parts;

std::optional<int> SupervisedPlugin::place_images(const Generation& generation, Json& params) {
  std::optional<int> slot = generation.maps_images ? images_->lend() : std::nullopt;
  if (slot && wire::images_to_slot(params, images_->request_slot(*slot)) == 0) {
    images_->give_back(*slot);  // nothing fitted
    slot.reset();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  ++(slot ? image_requests_in_region_ : image_requests_inline_);
  return slot;
}

std::string SupervisedPlugin::take_images(const std::string& hook, const Json& sent, Json& result) {
  if (!takes_images(hook)) return "";
  try {
    if (sent.contains("image_slot"))
      wire::images_from_slot(result, images_->reply_slot(sent["image_slot"].get<int>()));
    else if (wire::image_slot_index(result))
      return "the reply's image lies in the image region, but its request lent it no slot";
  } catch (const wire::DecodeError& e) {
    return std::string("the reply's image: ") + e.what();
  }
  return "";
}

}  // namespace bulkhead
