// sampling.hpp — images from prompts: single samples and the PNG grids written during training.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <bulkhead/plugin.hpp>

#include "train/model.hpp"
#include "train/vocab.hpp"

namespace bulkhead {

struct SampleOptions {
  int steps = 30;
  double guidance = 3.0;
  std::uint64_t seed = 0;
  int per_prompt = 1;  // images per prompt (one grid row)
  bool amp = false;
};

// per_prompt images for each prompt, prompt after prompt. Deterministic in options.seed.
std::vector<Image> generate(FlowModel& model, const Vocabulary& vocab, const std::vector<std::string>& prompts,
                            const SampleOptions& options);

// Writes <stem>.png (one row per prompt, enlarged so that small images can be seen), each row on its
// own with its prompt drawn above it (<stem>-pNN.png), and <stem>.txt (the prompts, one per row).
// Returns the grid, and its path.
struct SampleGrid {
  std::filesystem::path png;
  Image image;
};
SampleGrid write_sample_grid(const std::filesystem::path& stem, FlowModel& model, const Vocabulary& vocab,
                             const std::vector<std::string>& prompts, const SampleOptions& options);

// Tiles of one size, row by row, `columns` per row, `gap` white pixels around each.
Image make_grid(const std::vector<Image>& tiles, int columns, int gap);
// One prompt per line (the rows of a grid), written atomically.
void write_prompt_list(const std::filesystem::path& path, const std::vector<std::string>& prompts);

}  // namespace bulkhead
