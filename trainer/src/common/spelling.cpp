#include "common/spelling.hpp"

#include <algorithm>

namespace bulkhead {
namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string nearest_key(const std::string& key, const std::vector<std::string>& candidates) {
  std::string best;
  // A third of the word may be wrong, and at least two letters: beyond that a guess misleads.
  std::size_t best_distance = std::max<std::size_t>(2, key.size() / 3) + 1;
  for (auto& candidate : candidates) {
    std::size_t d = edit_distance(key, candidate);
    if (d < best_distance) best_distance = d, best = candidate;
  }
  return best;
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& known) {
  const std::string best = nearest_key(word, known);
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

}  // namespace bulkhead
