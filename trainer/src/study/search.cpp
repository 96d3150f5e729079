#include "study/search.hpp"

#include <algorithm>
#include <cmath>
#include <random>

namespace bulkhead {

Json grid_point(const Json& search_space, std::size_t index) {
  // Mixed radix, the last key fastest: nlohmann's objects keep keys sorted, so the order is stable.
  std::vector<std::string> keys;
  for (auto& [key, values] : search_space.items()) keys.push_back(key);
  Json params = Json::object();
  for (auto key = keys.rbegin(); key != keys.rend(); ++key) {
    const Json& values = search_space.at(*key);
    params[*key] = values[index % values.size()];
    index /= values.size();
  }
  return params;
}

Json random_point(const Json& search_space, std::uint64_t seed, std::size_t trial) {
  std::seed_seq sequence{std::uint32_t(seed), std::uint32_t(seed >> 32), std::uint32_t(trial), 0x5eedu};
  std::mt19937_64 rng(sequence);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  Json params = Json::object();
  for (auto& [key, space] : search_space.items()) {
    const double u = unit(rng);
    if (space.is_array()) {
      params[key] = space[std::min(space.size() - 1, std::size_t(u * double(space.size())))];
      continue;
    }
    const double min = space["min"], max = space["max"];
    double value = space.value("log", false) ? std::exp(std::log(min) + u * (std::log(max) - std::log(min)))
                                             : min + u * (max - min);
    value = std::clamp(value, min, max);  // exp(log(x)) may land a hair outside
    if (space.value("integer", false)) params[key] = std::int64_t(std::llround(value));
    else params[key] = value;
  }
  return params;
}

std::string outside_space(const Json& search_space, const Json& params) {
  if (!params.is_object()) return "params is " + std::string(params.type_name()) + ", not an object";
  for (auto& [key, value] : params.items())
    if (!search_space.contains(key)) return "\"" + key + "\" is not in the search space";
  for (auto& [key, space] : search_space.items()) {
    if (!params.contains(key)) return "\"" + key + "\" is missing";
    const Json& value = params[key];
    if (space.is_array()) {
      if (std::find(space.begin(), space.end(), value) == space.end())
        return key + " " + value.dump() + " is not one of " + space.dump();
      continue;
    }
    if (!value.is_number() || !std::isfinite(value.get<double>())) return key + " " + value.dump() + " is not a number";
    const double v = value, min = space["min"], max = space["max"];
    if (v < min || v > max) return key + " " + value.dump() + " is outside [" + space["min"].dump() + ", " + space["max"].dump() + "]";
    if (space.value("integer", false) && v != std::floor(v)) return key + " " + value.dump() + " is not an integer";
  }
  return "";
}

}  // namespace bulkhead
