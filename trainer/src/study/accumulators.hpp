// accumulators.hpp — what a trial logged, summed up: each metric's last value, and the accumulators
// a method asked for (Embedding Studio's MetricsAccumulator: mean, sliding-window mean, min, max).
//
//   TrialMetrics m = read_trial_metrics(run_dir / "metrics.jsonl", spec.accumulators);
//   m.values["val_loss"];        // the last val_loss logged: raw metrics are always there
//   m.values["sliding_loss"];    // the mean of the last N losses, when an accumulator asked for it
//   m.non_finite;                // a NaN or infinite loss was logged (it is written as null)
//
// Computed by the trainer from metrics.jsonl, for every metric a trial logs, so a metric no
// accumulator names is still recorded, and the numbers can be checked by hand.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "study/method.hpp"

namespace bulkhead {

struct TrialMetrics {
  std::map<std::string, double> values;                 // last value of each metric, and each accumulator's
  std::map<std::string, std::vector<std::pair<std::int64_t, double>>> series;  // accumulators per step, for TensorBoard
  std::string non_finite;                               // the first metric logged as NaN or infinity ("" if none)
};

TrialMetrics read_trial_metrics(const std::filesystem::path& metrics_jsonl, const std::vector<AccumulatorSpec>& accumulators);

}  // namespace bulkhead
