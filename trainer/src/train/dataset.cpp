#include "train/dataset.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <optional>
#include <random>
#include <thread>

#include "common/log.hpp"
#include "train/data_folder.hpp"
#include "train/image_io.hpp"
#include "train/text.hpp"

namespace bulkhead {
namespace fs = std::filesystem;
namespace {

struct Rgb {
  const char* name;
  std::uint8_t r, g, b;
};

constexpr Rgb kColours[] = {{"red", 220, 40, 40},     {"green", 40, 170, 60},   {"blue", 40, 80, 225},
                            {"yellow", 240, 215, 40}, {"purple", 140, 60, 180}, {"orange", 245, 140, 30}};
constexpr Rgb kBackgrounds[] = {{"white", 245, 245, 245}, {"black", 15, 15, 15}, {"gray", 128, 128, 128}};
constexpr const char* kShapes[] = {"circle", "square", "triangle", "diamond", "cross"};
struct Position {
  const char* name;
  double x, y;
};
constexpr Position kPositions[] = {{"top left", 0.28, 0.28},    {"top right", 0.72, 0.28}, {"center", 0.5, 0.5},
                                   {"bottom left", 0.28, 0.72}, {"bottom right", 0.72, 0.72}};

// (u, v): offset from the shape's centre in units of its radius, v pointing down.
bool inside(const std::string& shape, double u, double v) {
  if (shape == "circle") return u * u + v * v <= 1.0;
  if (shape == "square") return std::abs(u) <= 0.85 && std::abs(v) <= 0.85;
  if (shape == "diamond") return std::abs(u) + std::abs(v) <= 1.0;
  if (shape == "triangle") return v <= 0.8 && std::abs(u) <= (v + 1.0) / 1.8;
  return (std::abs(u) <= 0.33 && std::abs(v) <= 1.0) || (std::abs(v) <= 0.33 && std::abs(u) <= 1.0);  // cross
}

// 4x4 supersampling keeps edges smooth at 32 pixels.
Image draw_shape(int size, const std::string& shape, const Rgb& colour, const Rgb& background, const Position& at) {
  Image image;
  image.width = image.height = size;
  image.data.resize(std::size_t(size) * size * 3);
  const double radius = 0.2 * size, cx = at.x * size, cy = at.y * size;
  constexpr int kSub = 4;
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      int hits = 0;
      for (int sy = 0; sy < kSub; ++sy)
        for (int sx = 0; sx < kSub; ++sx)
          hits += inside(shape, (x + (sx + 0.5) / kSub - cx) / radius, (y + (sy + 0.5) / kSub - cy) / radius);
      double a = double(hits) / (kSub * kSub);
      std::uint8_t* px = &image.data[(std::size_t(y) * size + x) * 3];
      px[0] = std::uint8_t(std::lround(a * colour.r + (1 - a) * background.r));
      px[1] = std::uint8_t(std::lround(a * colour.g + (1 - a) * background.g));
      px[2] = std::uint8_t(std::lround(a * colour.b + (1 - a) * background.b));
    }
  }
  return image;
}

// Decodes in parallel; each result goes to its item's slot, so the order stays fixed.
std::vector<std::optional<Example>> decode(const FolderScan& scan, const DataOptions& options,
                                           std::vector<std::string>& errors) {
  std::vector<std::optional<Example>> decoded(scan.items.size());
  errors.assign(scan.items.size(), "");
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i; (i = next++) < scan.items.size();) {
      const FolderItem& item = scan.items[i];
      try {
        decoded[i] = Example{center_crop_resize(read_image(item.image, options.max_image_pixels), options.resolution),
                             item.caption, item.copies};
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, options.threads); ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  return decoded;
}

// Where the captions came from, what was skipped, and every difference from EveryDream2, once each.
void log_scan(const FolderScan& scan) {
  auto log = logger("data");
  std::string sources;
  for (auto& [source, count] : scan.caption_sources)
    sources += (sources.empty() ? "" : ", ") + std::to_string(count) + " from " + source;
  log->info("captions: {}", sources);
  for (auto& hidden : scan.hidden) log->info("skipped {} (hidden, as EveryDream2 does)", hidden.string());
  for (auto& note : scan.notes) log->warn("EveryDream2 data: {}", note);
}

Dataset load_folder(const fs::path& root, const DataOptions& options) {
  const FolderScan scan = scan_folder(root, options.seed);
  if (scan.items.empty())
    throw DataError("no images in data_root " + root.string() +
                    " (looked for .png, .jpg, .jpeg, .jfif, .bmp and .webp, recursively, skipping hidden folders)");
  log_scan(scan);
  std::vector<std::string> errors;
  auto decoded = decode(scan, options, errors);

  Dataset data;
  data.description = root.string();
  for (std::size_t i = 0; i < scan.items.size(); ++i) {
    const std::string file = scan.items[i].image.string();
    if (!decoded[i]) {
      logger("data")->warn("skipping image {}: {}", file, errors[i]);
      data.skipped.push_back(file);
      continue;
    }
    if (!valid_utf8(decoded[i]->caption)) {
      data.invalid_utf8.push_back(file);
      decoded[i]->caption = repair_utf8(decoded[i]->caption);
    }
    data.examples.push_back(std::move(*decoded[i]));
  }
  if (data.examples.empty())
    throw DataError("none of the " + std::to_string(scan.items.size()) + " images in " + root.string() + " could be read");
  return data;
}

}  // namespace

Dataset make_shapes_dataset(int resolution) {
  Dataset data;
  data.description = "builtin:shapes";
  for (auto& shape : kShapes)
    for (auto& colour : kColours)
      for (auto& background : kBackgrounds)
        for (auto& position : kPositions) {
          const char* article = std::string("aeiou").find(colour.name[0]) == std::string::npos ? "a " : "an ";
          std::string caption = article + std::string(colour.name) + " " + shape + " on a " + background.name +
                                " background, " + position.name;
          data.examples.push_back({draw_shape(resolution, shape, colour, background, position), caption});
        }
  return data;
}

Dataset load_dataset(const std::string& data_root, const DataOptions& options) {
  Dataset data = data_root == "builtin:shapes" ? make_shapes_dataset(options.resolution)
                                               : load_folder(data_root, options);
  auto log = logger("data");
  log->info("{}: {} images at {}x{}{}{}", data.description, data.examples.size(), options.resolution,
            options.resolution, data.skipped.empty() ? "" : ", " + std::to_string(data.skipped.size()) + " skipped",
            data.invalid_utf8.empty() ? "" : ", " + std::to_string(data.invalid_utf8.size()) + " captions not UTF-8");
  if (!data.invalid_utf8.empty())
    log->warn("{} caption(s) were not valid UTF-8; each invalid byte sequence was replaced by U+FFFD and is no word "
              "(first: the caption of {})", data.invalid_utf8.size(), data.invalid_utf8.front());
  return data;
}

std::pair<Dataset, Dataset> split_validation(Dataset data, double fraction, std::uint64_t seed) {
  std::size_t count = static_cast<std::size_t>(std::lround(data.examples.size() * fraction));
  count = std::min(count, data.examples.size() - 1);  // always keep something to train on
  std::vector<std::size_t> order(data.examples.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<bool> held_out(order.size(), false);
  for (std::size_t i = 0; i < count; ++i) held_out[order[i]] = true;

  Dataset train, validation;
  train.description = validation.description = data.description;
  train.skipped = data.skipped;
  train.invalid_utf8 = data.invalid_utf8;
  for (std::size_t i = 0; i < data.examples.size(); ++i) {
    Example& example = data.examples[i];
    if (held_out[i]) {
      validation.examples.push_back(std::move(example));
      continue;
    }
    for (int copy = 1; copy < example.copies; ++copy) train.examples.push_back(example);  // multiply
    train.examples.push_back(std::move(example));
  }
  return {std::move(train), std::move(validation)};
}

}  // namespace bulkhead
