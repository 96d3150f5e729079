#include "supervisor/host_pool.hpp"

#include <algorithm>

#include "common/schemas.hpp"

namespace bulkhead {
namespace {

// By the catalogue's kind, as every other judgement of a hook (schemas/hooks.json).
bool is_transform(const std::string& hook) {
  const auto& hooks = Schemas::instance().hook_catalogue()["hooks"];
  return hooks.contains(hook) && hooks[hook]["kind"] == "transform";
}

// Holds a host busy for the length of one call.
class InFlight {
 public:
  explicit InFlight(std::atomic<int>& count) : count_(count) { ++count_; }
  ~InFlight() { --count_; }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  std::atomic<int>& count_;
};

}  // namespace

HostPool::HostPool(std::vector<std::unique_ptr<SupervisedPlugin>> extra)
    : extra_(std::move(extra)), in_flight_(extra_.size() + 1) {}

std::vector<std::optional<Json>> HostPool::transform(SupervisedPlugin& first, const TransformHooks& hooks,
                                                     const std::vector<Json>& items) {
  std::size_t chosen = 0;
  for (std::size_t i = 1; i < in_flight_.size(); ++i)
    if (in_flight_[i] < in_flight_[chosen]) chosen = i;
  InFlight busy(in_flight_[chosen]);
  SupervisedPlugin& host = chosen == 0 ? first : *extra_[chosen - 1];
  return host.transform(hooks, items);
}

std::string HostPool::refusal(const Manifest& manifest, int size) {
  if (size <= 1) return "";
  const auto other = std::find_if(manifest.hooks.begin(), manifest.hooks.end(), [](const auto& h) { return !is_transform(h); });
  if (other == manifest.hooks.end()) return "";
  return "plugin '" + manifest.name + "' has \"pool\": " + std::to_string(size) +
         ", but a pool serves only plugins whose hooks are all transforms (kind \"transform\" in schemas/hooks.json); "
         "its manifest also declares " + *other;
}

std::string HostPool::host_name(const std::string& plugin, int k) { return plugin + "." + std::to_string(k); }

}  // namespace bulkhead
