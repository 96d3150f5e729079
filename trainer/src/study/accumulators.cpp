#include "study/accumulators.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <fstream>
#include <limits>

namespace bulkhead {
namespace {

// Running statistics of one metric.
class Accumulator {
 public:
  explicit Accumulator(AccumulatorSpec spec) : spec_(std::move(spec)) {}

  void add(std::int64_t step, double value, TrialMetrics& out) {
    sum_ += value;
    ++count_;
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
    if (spec_.sliding_window > 0) {
      window_.push_back(value);
      window_sum_ += value;
      if (int(window_.size()) > spec_.sliding_window) window_sum_ -= window_.front(), window_.pop_front();
    }
    for (const auto& [name, current] : current_values()) {
      out.values[name] = current;
      out.series[name].emplace_back(step, current);
    }
  }

 private:
  std::vector<std::pair<std::string, double>> current_values() const {
    std::vector<std::pair<std::string, double>> values;
    if (spec_.mean) values.emplace_back("mean_" + spec_.metric, sum_ / double(count_));
    if (spec_.sliding_window > 0) values.emplace_back("sliding_" + spec_.metric, window_sum_ / double(window_.size()));
    if (spec_.min) values.emplace_back("min_" + spec_.metric, min_);
    if (spec_.max) values.emplace_back("max_" + spec_.metric, max_);
    return values;
  }

  AccumulatorSpec spec_;
  double sum_ = 0, window_sum_ = 0;
  long count_ = 0;
  double min_ = std::numeric_limits<double>::infinity(), max_ = -std::numeric_limits<double>::infinity();
  std::deque<double> window_;
};

bool is_bookkeeping(const std::string& key) { return key == "step" || key == "epoch" || key == "local_step"; }

}  // namespace

TrialMetrics read_trial_metrics(const std::filesystem::path& metrics_jsonl, const std::vector<AccumulatorSpec>& accumulators) {
  TrialMetrics out;
  std::multimap<std::string, Accumulator> by_metric;
  for (const auto& spec : accumulators) by_metric.emplace(spec.metric, Accumulator(spec));
  std::ifstream in(metrics_jsonl);
  for (std::string line; std::getline(in, line);) {
    const auto record = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object() || !record.contains("step")) continue;  // a line cut by a crash
    const std::int64_t step = record["step"];
    for (auto& [key, value] : record.items()) {
      if (is_bookkeeping(key)) continue;
      // nlohmann writes NaN and infinity as null: a diverged run.
      if (value.is_null() || (value.is_number() && !std::isfinite(value.get<double>()))) {
        if (out.non_finite.empty()) out.non_finite = key + " at step " + std::to_string(step);
        continue;
      }
      if (!value.is_number()) continue;
      out.values[key] = value.get<double>();
      auto [first, last] = by_metric.equal_range(key);
      for (auto it = first; it != last; ++it) it->second.add(step, value.get<double>(), out);
    }
  }
  return out;
}

}  // namespace bulkhead
