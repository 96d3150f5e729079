// search.hpp — the parameters of a study's trial n: a grid's n-th combination, or a seeded random draw.
//
//   Json params = grid_point(spec.search_space, 3);          // keys in order, the last one varies fastest
//   Json params = random_point(spec.search_space, seed, 3);  // the same (seed, n) always draws the same
//   std::string why = outside_space(spec.search_space, suggested);   // "" when a plugin's suggestion fits
//
// Draws depend on (seed, trial) only, never on earlier draws: a resumed study proposes the same
// parameters for the trials it still has to run.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace bulkhead {

using Json = nlohmann::json;

Json grid_point(const Json& search_space, std::size_t index);
Json random_point(const Json& search_space, std::uint64_t seed, std::size_t trial);
// Why params do not fit the search space (a key missing or extra, a value not in the list, out of
// range, not an integer where one is needed, not a JSON object), or "" when they do.
std::string outside_space(const Json& search_space, const Json& params);

}  // namespace bulkhead
