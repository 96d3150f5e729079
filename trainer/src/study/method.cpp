#include "study/method.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "train/config.hpp"

namespace bulkhead {
namespace {

std::string describe(const std::vector<std::string>& names) { return fmt::format("{}", fmt::join(names, ", ")); }

// A key outside the allow-list is refused by name, with what a method may set: a method that
// reaches for data_root, plugins, device or a grant never gets near training.
void check_tunable(const std::string& who, const std::string& field, const Json& keys) {
  const auto tunable = tunable_keys();
  for (auto& [key, value] : keys.items()) {
    if (std::find(tunable.begin(), tunable.end(), key) != tunable.end()) continue;
    throw ConfigError(fmt::format("{}: describe_method: {}.{}: a method may tune only training knobs ({}); \"{}\" is not one{}",
                                  who, field, key, describe(tunable), key, did_you_mean(key, tunable)));
  }
}

// Every candidate value, one key at a time, must make a valid train.json with the base config:
// a grid that holds batch_size 0 is refused now, not after three trials.
void check_values(const std::string& who, const MethodSpec& spec, const Json& base_user, const std::string& source,
                  const std::filesystem::path& source_dir) {
  auto try_value = [&](const std::string& field, const std::string& key, const Json& value) {
    try {
      resolve_config(trial_config(base_user, spec.settings, {{key, value}}), source, source_dir);
    } catch (const ConfigError& e) {
      throw ConfigError(fmt::format("{}: describe_method: {}.{}: the value {} breaks train.json: {}", who, field, key,
                                    value.dump(), e.what()));
    }
  };
  try {
    resolve_config(trial_config(base_user, spec.settings, Json::object()), source, source_dir);
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: describe_method: settings break train.json: {}", who, e.what()));
  }
  for (auto& [key, space] : spec.search_space.items()) {
    if (space.is_array()) {
      for (auto& value : space) try_value("search_space", key, value);
      continue;
    }
    const double min = space["min"], max = space["max"];
    if (!(min <= max)) throw ConfigError(fmt::format("{}: describe_method: search_space.{}: min {} is above max {}", who, key, min, max));
    if (space.value("log", false) && min <= 0)
      throw ConfigError(fmt::format("{}: describe_method: search_space.{}: a log range needs min > 0, not {}", who, key, min));
    const bool integer = space.value("integer", false);
    try_value("search_space", key, integer ? Json(std::int64_t(min)) : Json(min));
    try_value("search_space", key, integer ? Json(std::int64_t(max)) : Json(max));
  }
}

std::vector<AccumulatorSpec> parse_accumulators(const Json& reply) {
  std::vector<AccumulatorSpec> accumulators;
  for (const auto& item : reply.value("accumulators", Json::array())) {
    AccumulatorSpec a;
    a.metric = item["metric"];
    a.mean = item.value("mean", false);
    a.min = item.value("min", false);
    a.max = item.value("max", false);
    a.sliding_window = item.value("sliding_window", 0);
    accumulators.push_back(a);
  }
  return accumulators;
}

// The main metric and every accumulated metric must be something a trial can log: Embedding
// Studio silently never logs a metric no accumulator matches, and scores a trial on nothing.
void check_metrics(const std::string& who, const MethodSpec& spec) {
  std::vector<std::string> raw = trainer_metrics();
  raw.insert(raw.end(), spec.metrics.begin(), spec.metrics.end());
  std::vector<std::string> known = raw;
  for (const auto& a : spec.accumulators) {
    if (std::find(raw.begin(), raw.end(), a.metric) == raw.end())
      throw ConfigError(fmt::format("{}: describe_method: accumulators: no trial logs \"{}\" (known: {})", who, a.metric, describe(raw)));
    for (auto& name : accumulator_outputs(a)) known.push_back(name);
  }
  if (std::find(known.begin(), known.end(), spec.main_metric) == known.end()) {
    throw ConfigError(fmt::format("{}: describe_method: main_metric: no trial logs \"{}\"{} (known: {})", who, spec.main_metric,
                                  did_you_mean(spec.main_metric, known), describe(known)));
  }
}

std::size_t grid_size(const Json& space) {
  std::size_t size = 1;
  for (auto& [key, values] : space.items()) size *= values.size();
  return size;
}

}  // namespace

const std::vector<std::string>& trainer_metrics() {
  static const std::vector<std::string> names{"loss", "val_loss", "lr", "samples_per_s", "grad_accum", "optimizer_steps"};
  return names;
}

std::vector<std::string> accumulator_outputs(const AccumulatorSpec& a) {
  std::vector<std::string> names;
  if (a.mean) names.push_back("mean_" + a.metric);
  if (a.sliding_window > 0) names.push_back("sliding_" + a.metric);
  if (a.min) names.push_back("min_" + a.metric);
  if (a.max) names.push_back("max_" + a.metric);
  return names;
}

Json MethodSpec::to_json() const {
  Json accumulated = Json::array();
  for (const auto& a : accumulators)
    accumulated.push_back({{"metric", a.metric}, {"mean", a.mean}, {"min", a.min}, {"max", a.max}, {"sliding_window", a.sliding_window}});
  Json json = {{"settings", settings},       {"search_space", search_space}, {"algorithm", algorithm},
               {"max_evals", max_evals},     {"accumulators", accumulated},  {"main_metric", main_metric},
               {"higher_is_better", higher_is_better}, {"metrics", metrics}, {"keep", keep}};
  if (seed) json["seed"] = *seed;
  return json;
}

MethodSpec parse_method(const Json& reply, const std::string& who, const Json& base_user, const std::string& source,
                        const std::filesystem::path& source_dir) {
  MethodSpec spec;
  spec.settings = reply.value("settings", Json::object());
  spec.search_space = reply["search_space"];
  spec.algorithm = reply.value("algorithm", "grid");
  spec.accumulators = parse_accumulators(reply);
  spec.main_metric = reply["main_metric"];
  spec.higher_is_better = reply.value("higher_is_better", false);
  spec.metrics = reply.value("metrics", std::vector<std::string>{});
  spec.keep = reply.value("keep", "best");
  if (reply.contains("seed")) spec.seed = reply["seed"].get<std::uint64_t>();
  check_tunable(who, "settings", spec.settings);
  check_tunable(who, "search_space", spec.search_space);
  check_metrics(who, spec);
  if (spec.algorithm == "grid") {
    for (auto& [key, space] : spec.search_space.items())
      if (!space.is_array())
        throw ConfigError(fmt::format("{}: describe_method: search_space.{}: a grid takes a list of values; a range needs "
                                      "algorithm \"random\" or \"plugin\"", who, key));
    const std::size_t size = grid_size(spec.search_space);
    spec.max_evals = int(std::min<std::size_t>(size, reply.value("max_evals", 1000)));
  } else if (!reply.contains("max_evals")) {
    throw ConfigError(fmt::format("{}: describe_method: max_evals: algorithm \"{}\" needs a budget of trials", who, spec.algorithm));
  } else {
    spec.max_evals = reply["max_evals"];
  }
  check_values(who, spec, base_user, source, source_dir);
  return spec;
}

Json trial_config(Json base_user, const Json& settings, const Json& params) {
  auto set = [&base_user](const std::string& key, const Json& value) {
    const auto dot = key.find('.');
    if (dot == std::string::npos) {
      base_user[key] = value;
      return;
    }
    Json& outer = base_user[key.substr(0, dot)];
    if (!outer.is_object()) outer = Json::object();
    outer[key.substr(dot + 1)] = value;
  };
  for (auto& [key, value] : settings.items()) set(key, value);
  for (auto& [key, value] : params.items()) set(key, value);
  return base_user;
}

}  // namespace bulkhead
