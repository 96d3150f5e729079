#include "train/dataset.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <optional>
#include <random>
#include <thread>

#include "common/log.hpp"
#include "train/image_io.hpp"

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

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

// EveryDream2's convention: image.png + image.txt; without a caption file, the file name.
std::string caption_for(const fs::path& image_path) {
  fs::path text = image_path;
  text.replace_extension(".txt");
  std::string caption;
  if (std::ifstream in(text); in) {
    std::getline(in, caption, '\0');
  } else {
    caption = image_path.stem().string();
    std::replace(caption.begin(), caption.end(), '_', ' ');
  }
  auto first = caption.find_first_not_of(" \t\r\n");
  auto last = caption.find_last_not_of(" \t\r\n");
  return first == std::string::npos ? "" : caption.substr(first, last - first + 1);
}

Dataset load_folder(const fs::path& root, int resolution, int threads) {
  if (!fs::is_directory(root)) throw DataError("data_root " + root.string() + " is not a folder");
  std::vector<fs::path> files;
  for (auto& entry : fs::recursive_directory_iterator(root, fs::directory_options::follow_directory_symlink))
    if (entry.is_regular_file() && is_image_file(entry.path())) files.push_back(entry.path());
  if (files.empty())
    throw DataError("no images in data_root " + root.string() + " (looked for .png, .jpg and .jpeg, recursively)");
  std::sort(files.begin(), files.end());  // the data order must not depend on the file system

  // Decode in parallel; each result goes to its file's slot, so the order stays fixed.
  std::vector<std::optional<Example>> decoded(files.size());
  std::vector<std::string> errors(files.size());
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i; (i = next++) < files.size();) {
      try {
        decoded[i] = Example{center_crop_resize(read_image(files[i]), resolution), caption_for(files[i])};
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();

  Dataset data;
  data.description = root.string();
  auto log = logger("data");
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (decoded[i]) {
      data.examples.push_back(std::move(*decoded[i]));
    } else {
      log->warn("skipping corrupt image {}: {}", files[i].string(), errors[i]);
      data.skipped.push_back(files[i].string());
    }
  }
  if (data.examples.empty())
    throw DataError("none of the " + std::to_string(files.size()) + " images in " + root.string() + " could be read");
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

Dataset load_dataset(const std::string& data_root, int resolution, int threads) {
  Dataset data = data_root == "builtin:shapes" ? make_shapes_dataset(resolution)
                                               : load_folder(data_root, resolution, threads);
  logger("data")->info("{}: {} images at {}x{}{}", data.description, data.examples.size(), resolution, resolution,
                       data.skipped.empty() ? "" : ", " + std::to_string(data.skipped.size()) + " skipped as corrupt");
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
  for (std::size_t i = 0; i < data.examples.size(); ++i)
    (held_out[i] ? validation : train).examples.push_back(std::move(data.examples[i]));
  return {std::move(train), std::move(validation)};
}

}  // namespace bulkhead
