// method.hpp — a fine-tuning method's recipe (its describe_method answer), checked before any training.
//
//   MethodSpec spec = parse_method(reply, "train.json", base_user_config);   // throws ConfigError naming the field
//   Json trial = trial_config(base_user_config, spec.settings, params);        // base ⊕ settings ⊕ trial params
//
// A method tunes training knobs only (train.schema.json's x-tunable keys): a path, a plugin, the
// device or a grant in its settings or search space stops the study before training.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bulkhead {

using Json = nlohmann::json;

// One accumulator: running statistics of one logged metric, as Embedding Studio's MetricsAccumulator.
struct AccumulatorSpec {
  std::string metric;
  bool mean = false, min = false, max = false;
  int sliding_window = 0;  // 0: none
};

struct MethodSpec {
  Json settings = Json::object();      // dotted tunable key -> value, every trial
  Json search_space = Json::object();  // dotted tunable key -> list of values, or {min, max, log, integer}
  std::string algorithm = "grid";      // grid | random | plugin
  int max_evals = 0;                   // trials in the study (grid: its size, unless fewer were asked)
  std::optional<std::uint64_t> seed;   // random search's seed; unset: train.json's seed
  std::vector<AccumulatorSpec> accumulators;
  std::string main_metric;
  bool higher_is_better = false;
  std::vector<std::string> metrics;    // names evaluate may return
  std::string keep = "best";           // best | all

  Json to_json() const;
};

// The metrics every training run logs (Trainer::log_metrics), which a method may score on.
const std::vector<std::string>& trainer_metrics();
// The names an accumulator writes: mean_<m>, sliding_<m>, min_<m>, max_<m>, as it asks.
std::vector<std::string> accumulator_outputs(const AccumulatorSpec& accumulator);

// Checks a describe_method reply (already valid against schemas/hooks.json) against the run:
// only tunable keys, a grid of lists, a known main metric, every value accepted by train.schema.json.
// `who` names the method in messages. Throws ConfigError.
MethodSpec parse_method(const Json& reply, const std::string& who, const Json& base_user, const std::string& source,
                        const std::filesystem::path& source_dir);

// base ⊕ settings ⊕ params: dotted keys (model.channels) go into their object.
Json trial_config(Json base_user, const Json& settings, const Json& params);

}  // namespace bulkhead
