// supervised_plugin_transform.cpp — transforms over a batch of items (docs/protocol.md, section 3.7):
// one message when the plugin takes batches, else one per item; a batch that fails whole retried item by item.
#include "supervisor/supervised_plugin_parts.hpp"

#include <algorithm>

namespace bulkhead {
using namespace supervised_parts;

namespace {

// What check_reply needs of one item of a batch, as if it had been sent alone.
Json item_shape(const TransformHooks& hooks, const Json& item) {
  if (!item.is_object()) return Json::object();
  return {{hooks.item_key, image_shape(item)}};
}

}  // namespace

bool SupervisedPlugin::takes_batches(const TransformHooks& hooks) const {
  if (!implements(hooks.batch_hook)) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  return batches_refused_.count(hooks.batch_hook) == 0;
}

std::vector<std::optional<Json>> SupervisedPlugin::transform(const TransformHooks& hooks, const std::vector<Json>& items) {
  // One item goes as itself to a plugin that has the per-item hook: the same message as ever.
  if (!takes_batches(hooks) || (items.size() == 1 && implements(hooks.item_hook))) return transform_each(hooks, items);
  if (auto out = transform_batch(hooks, items)) return std::move(*out);
  auto retried = transform_each(hooks, items);
  // A batch that failed (not one refused) with every item fine on its own: the fault was the
  // batch's, not an item's, and counts as one now.
  if (takes_batches(hooks) && std::all_of(retried.begin(), retried.end(), [](const auto& item) { return item.has_value(); }))
    count_batch_fault(hooks.batch_hook);
  return retried;
}

std::optional<std::vector<std::optional<Json>>> SupervisedPlugin::transform_batch(const TransformHooks& hooks,
                                                                                  const std::vector<Json>& items) {
  const int count = static_cast<int>(items.size());
  // deadline_ms of a batched hook is per item (schemas/hooks.json). A batch waits no longer for a
  // backoff than one item would: a plugin that keeps crashing must not hold the loader up longer
  // than it would with its items one by one.
  const auto per_item = deadline(hooks.item_hook);
  auto answer = exchange(hooks.batch_hook, {{hooks.batch_key, items}}, per_item * count, per_item);
  std::vector<std::optional<Json>> out(items.size());
  if (!answer) {  // no host (quarantined, or not back in time): every item passes through
    std::lock_guard<std::mutex> lock(mutex_);
    counters_.count_skipped_items(hooks.batch_hook, count);
    return out;
  }
  if (answer->reply.status == Reply::Status::error && answer->reply.code == "unknown_method") {
    // Its hello listed the batched hook, but it does not answer it: found out once, not per batch.
    {
      std::lock_guard<std::mutex> lock(mutex_);
      batches_refused_.insert(hooks.batch_hook);
    }
    protocol_problem("lists " + hooks.batch_hook + " in its hello but answers unknown_method to it: its " +
                     hooks.batch_key + " go one by one from now on");
    return std::nullopt;
  }
  const int generation = answer->generation;
  auto result = conclude(hooks.batch_hook, Json::object(), std::move(*answer));
  if (!result) return std::nullopt;  // counted; each item is tried again on its own
  Json& values = (*result)[hooks.batch_key];
  if (int(values.size()) != count) {
    const std::string what = "sent " + std::to_string(values.size()) + " " + hooks.batch_key + " back for " +
                             std::to_string(count) + ": each is tried again on its own";
    count_failure(hooks.batch_hook, Reply::Status::invalid);
    fault(hooks.batch_hook, what, generation, false);
    return std::nullopt;
  }
  long failed = 0;
  for (int i = 0; i < count; ++i) {
    Json one = {{hooks.item_key, std::move(values[i])}};
    const std::string invalid = check_reply(hooks.item_hook, item_shape(hooks, items[i]), one);
    if (invalid.empty()) {
      out[i] = std::move(one[hooks.item_key]);
      continue;
    }
    // A wrong item is that item's fault alone: it passes through, the others are kept.
    ++failed;
    count_failure(hooks.item_hook, Reply::Status::invalid);
    fault(hooks.item_hook,
          "sent an invalid reply for item " + std::to_string(i) + " of a batch of " + std::to_string(count) + " (" +
              hooks.batch_hook + "): " + invalid,
          generation, false);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.count_items(hooks.batch_hook, count, failed);
  return out;
}

std::vector<std::optional<Json>> SupervisedPlugin::transform_each(const TransformHooks& hooks,
                                                                  const std::vector<Json>& items) {
  std::vector<std::optional<Json>> out(items.size());
  const bool per_item_hook = implements(hooks.item_hook);
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!per_item_hook) {
      if (auto one = transform_batch(hooks, {items[i]}))
        out[i] = std::move((*one)[0]);
      else if (takes_batches(hooks))
        count_batch_fault(hooks.batch_hook);  // a batch of one is its item
    } else if (auto result = invoke(hooks.item_hook, {{hooks.item_key, items[i]}})) {
      out[i] = std::move((*result)[hooks.item_key]);
    }
  }
  return out;
}

}  // namespace bulkhead
