#include "supervisor/transform_hooks.hpp"

#include <map>
#include <stdexcept>

#include "common/schemas.hpp"

namespace bulkhead {
namespace {

// The one key every params object of the hook requires: "caption", "captions", ...
std::string carried_key(const Json& hook) { return hook.at("params").at("required").at(0).get<std::string>(); }

const std::map<std::string, TransformHooks>& pairs() {
  static const std::map<std::string, TransformHooks> by_item_hook = [] {
    std::map<std::string, TransformHooks> found;
    const auto& hooks = Schemas::instance().hook_catalogue()["hooks"];
    for (const auto& [name, hook] : hooks.items()) {
      if (!hook.contains("batch_of")) continue;
      const std::string item = hook["batch_of"];
      found[item] = TransformHooks{item, name, carried_key(hooks.at(item)), carried_key(hook)};
    }
    return found;
  }();
  return by_item_hook;
}

}  // namespace

const TransformHooks& TransformHooks::of(const std::string& item_hook) {
  const auto found = pairs().find(item_hook);
  if (found == pairs().end()) throw std::logic_error(item_hook + " has no batched form in schemas/hooks.json");
  return found->second;
}

bool TransformHooks::is_batch_hook(const std::string& hook) {
  for (const auto& [item, pair] : pairs())
    if (pair.batch_hook == hook) return true;
  return false;
}

}  // namespace bulkhead
