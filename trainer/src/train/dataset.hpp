// dataset.hpp — the training examples: a folder of captioned images, or the built-in shapes.
//
//   Dataset data = load_dataset("builtin:shapes", 32, 2);    // or a folder; throws DataError
//   auto [train, validation] = split_validation(std::move(data), 0.05, seed);
//
// Images are decoded, centre-cropped and resized once, here, and kept in
// memory at training resolution: a corrupt file is found (and skipped, and
// counted) before training starts, and the per-epoch loader only has to run
// the plugin transforms and normalise.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <bulkhead/plugin.hpp>

namespace bulkhead {

struct Example {
  Image image;          // resolution x resolution RGB
  std::string caption;  // as written (before any plugin transform)
};

struct Dataset {
  std::vector<Example> examples;
  std::vector<std::string> skipped;  // files that could not be decoded
  std::string description;           // for logs: the folder, or "builtin:shapes"
};

// A data problem that stops the run before training: missing or empty folder.
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "builtin:shapes" or a folder (searched recursively for .png/.jpg/.jpeg with
// same-named .txt captions; without one, the file name is the caption).
Dataset load_dataset(const std::string& data_root, int resolution, int threads);

// Synthetic, deterministic: every shape x colour x background x position, with
// captions like "a red circle on a white background, top left".
Dataset make_shapes_dataset(int resolution);

// Holds out round(size * fraction) examples, chosen by seed; both halves keep data order.
std::pair<Dataset, Dataset> split_validation(Dataset data, double fraction, std::uint64_t seed);

}  // namespace bulkhead
