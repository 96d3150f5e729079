// spelling.hpp — "did you mean" for names a user typed: config keys, commands, hook names, enum values.
#pragma once

#include <string>
#include <vector>

namespace bulkhead {

// The closest candidate within a small edit distance, or "".
std::string nearest_key(const std::string& key, const std::vector<std::string>& candidates);

// " (did you mean 'python'?)", or "" when no known name is close.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& known);

}  // namespace bulkhead
