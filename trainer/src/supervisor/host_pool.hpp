// host_pool.hpp — a plugin's hosts that serve transforms side by side (train.json "pool").
//
// The data loader's workers transform images at once; one host serves them one at a time. A pool
// starts more hosts of the same plugin, each supervised on its own (restarts, quarantine,
// counters), and sends each transform (a batch, or one item) to the host with the fewest calls in flight. Only a plugin
// whose hooks are all transforms may have one: its hosts then need no shared state, and no hook
// runs twice (docs/supervision.md, "Pools").
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "supervisor/supervised_plugin.hpp"

namespace bulkhead {

class HostPool {
 public:
  // The hosts beyond the plugin's first, which the caller keeps.
  explicit HostPool(std::vector<std::unique_ptr<SupervisedPlugin>> extra);

  // Runs a transform (a batch, or one item) on whichever of `first` and the extra hosts has the
  // fewest calls in flight.
  std::vector<std::optional<Json>> transform(SupervisedPlugin& first, const TransformHooks& hooks,
                                             const std::vector<Json>& items);
  const std::vector<std::unique_ptr<SupervisedPlugin>>& extra() const { return extra_; }

  // Why a pool of `size` cannot serve this plugin, or empty.
  static std::string refusal(const Manifest& manifest, int size);
  // The name of the pool's k-th host (k >= 2): its own sockets, scratch folder, log and report line.
  static std::string host_name(const std::string& plugin, int k);

 private:
  std::vector<std::unique_ptr<SupervisedPlugin>> extra_;
  std::vector<std::atomic<int>> in_flight_;  // the first host's, then each extra's
};

}  // namespace bulkhead
