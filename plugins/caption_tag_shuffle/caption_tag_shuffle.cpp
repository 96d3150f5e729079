// caption_tag_shuffle: "a, b, c, d" -> "a, d, b, c" — the first keep_tags stay, the rest are shuffled.
// Seeded by the caption's own text and the seed option, so a caption shuffles the same way
// whichever loader worker sees it: training stays deterministic.
#include <algorithm>
#include <functional>
#include <random>
#include <sstream>
#include <vector>

#include <bulkhead/plugin.hpp>

namespace {

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

class CaptionTagShuffle : public bulkhead::Plugin {
 public:
  std::string transform_caption(const std::string& caption) override {
    std::vector<std::string> tags;
    std::stringstream parts(caption);
    for (std::string tag; std::getline(parts, tag, ',');)
      if (!trim(tag).empty()) tags.push_back(trim(tag));
    const std::size_t keep = std::min<std::size_t>(tags.size(), context().options().value("keep_tags", 1));
    // Each call gets its own generator: a shuffle depends on the caption, not on call order.
    std::mt19937 generator(std::hash<std::string>{}(caption) ^ context().options().value("seed", 555u));
    std::shuffle(tags.begin() + keep, tags.end(), generator);
    std::string shuffled;
    for (const auto& tag : tags) shuffled += (shuffled.empty() ? "" : ", ") + tag;
    return shuffled;
  }
};

}  // namespace

BULKHEAD_PLUGIN(CaptionTagShuffle, "caption_tag_shuffle", "1.0.0",
                "Shuffles a caption's comma-separated tags, keeping the first N in place")
