// model_gate.hpp — a plugin's door to the model (manifest "model_access", granted in train.json):
// which parameters it may read or write, and the check every write request passes before the
// trainer lets it near a weight (docs/protocol.md, section 9).
//
//   ModelGate gate("textual_inversion", manifest.permissions.model_access, limits);
//   gate.describe(parameters);                 // the model's parameters; the gate keeps the granted ones
//   gate.set_trainable("caption.words.weight", std::vector<std::int64_t>{42});
//   gate.set_step(global_step);
//   std::string why = gate.admit(reply["updates"]);   // "" and queued, or the reason and nothing queued
//   for (auto& update : gate.take()) apply(update);   // at the next optimizer step boundary
//
// Torch-free on purpose: it runs on a connection's I/O thread, on bytes it has already copied.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <bulkhead/plugin.hpp>

#include "supervisor/shared_region.hpp"

namespace bulkhead {

struct ModelParameter {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<std::string> access;  // "read", "write", "grad": what the plugin's grant gives it
};

// The modes the patterns of `model_access` give the parameter `name` (glob patterns, fnmatch).
std::vector<std::string> granted_modes(const std::map<std::string, std::vector<std::string>>& model_access,
                                       const std::string& name);

// One validated write, its values copied out of the message.
struct ModelUpdate {
  std::string plugin, parameter;
  std::vector<std::int64_t> rows;
  bool add = false;  // add to the rows, or replace them
  std::int64_t based_on_step = 0;
  std::vector<float> values;  // rows.size() x the parameter's row size, row-major
};

struct ModelGateLimits {
  double max_update_norm = 10;      // of each row's values
  int max_update_staleness_steps = 8;
};

class ModelGate {
 public:
  ModelGate(std::string plugin, std::map<std::string, std::vector<std::string>> model_access, ModelGateLimits limits);

  // The whole model's parameters; the gate keeps those the grant names, with their modes.
  void describe(const std::vector<ModelParameter>& parameters);
  std::vector<ModelParameter> parameters() const;
  // Rows that train (nullopt: every row); a write to any other row is refused.
  void set_trainable(const std::string& parameter, std::optional<std::vector<std::int64_t>> rows);
  void set_step(std::int64_t global_step);
  // The caption vocabulary (every token by id), the parameter whose rows are its tokens, and what
  // counts as one word of a caption: what an on_model_load reply is checked against.
  void set_vocabulary(std::vector<std::string> tokens, std::string embedding,
                      std::function<bool(const std::string&)> is_word);

  // An on_model_load reply (schema-valid): its tokens, init words, trainable rows and parameters.
  // Returns "" or what is wrong.
  std::string check_load_reply(const Json& result) const;

  // The plugin's shared-memory region (null: everything travels inline).
  void set_region(std::shared_ptr<SharedRegion> region) { region_ = std::move(region); }
  const std::shared_ptr<SharedRegion>& region() const { return region_; }
  // A request went without tensors: no slot was free.
  void count_without_tensors();

  // Checks every update of a reply (model-update.schema.json items, already schema-valid) and
  // queues them all, or none: returns "" or what was wrong with the first bad one. `lent_slot`:
  // the region slot lent with the request it answers, the only one its updates may point into.
  std::string admit(const Json& updates, std::optional<int> lent_slot = std::nullopt);
  // The queued updates, oldest first.
  std::vector<ModelUpdate> take();
  // Updates admitted and refused so far.
  Json counters() const;

 private:
  std::string check(const Json& update, std::optional<int> lent_slot, ModelUpdate& out) const;
  std::string copy_values(const Json& tensor, std::optional<int> lent_slot, std::vector<std::uint8_t>& bytes) const;
  const ModelParameter* find(const std::string& name) const;  // with mutex_ held

  std::string plugin_;
  std::map<std::string, std::vector<std::string>> model_access_;
  ModelGateLimits limits_;
  mutable std::mutex mutex_;
  std::vector<ModelParameter> parameters_;
  std::map<std::string, std::optional<std::vector<std::int64_t>>> trainable_;  // absent: frozen
  std::int64_t step_ = 0;
  std::vector<std::string> tokens_;
  std::string embedding_;
  std::function<bool(const std::string&)> is_word_;
  std::vector<ModelUpdate> queued_;
  long admitted_ = 0, refused_ = 0, without_tensors_ = 0;
  std::shared_ptr<SharedRegion> region_;
};

}  // namespace bulkhead
