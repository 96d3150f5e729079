// dataset.hpp — the training examples: a folder of captioned images, or the built-in shapes.
//
//   Dataset data = load_dataset("builtin:shapes", {32, 2});    // or a folder (data_folder.hpp); throws DataError
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
  int copies = 1;       // times per epoch (EveryDream2's multiply); the validation set uses each once
};

struct DataOptions {
  int resolution = 32;
  int threads = 1;                                     // decoding threads
  std::int64_t max_image_pixels = 89478485;            // larger images are skipped before decoding
  std::uint64_t seed = 0;                              // multiply's fractional part
};

struct Dataset {
  std::vector<Example> examples;
  std::vector<std::string> skipped;  // files that could not be decoded
  std::vector<std::string> invalid_utf8;  // caption sources that were not valid UTF-8 (repaired with U+FFFD)
  std::string description;           // for logs: the folder, or "builtin:shapes"
};

// A data problem that stops the run before training: missing or empty folder.
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "builtin:shapes" or a folder read by EveryDream2's rules (data_folder.hpp).
Dataset load_dataset(const std::string& data_root, const DataOptions& options);

// Synthetic, deterministic: every shape x colour x background x position, with
// captions like "a red circle on a white background, top left".
Dataset make_shapes_dataset(int resolution);

// Holds out round(size * fraction) examples, chosen by seed; both halves keep data order. The
// training half has each example as many times as its copies say.
std::pair<Dataset, Dataset> split_validation(Dataset data, double fraction, std::uint64_t seed);

}  // namespace bulkhead
