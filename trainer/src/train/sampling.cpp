#include "train/sampling.hpp"

#include <algorithm>
#include <cstdio>

#include "common/atomic_file.hpp"
#include "train/image_io.hpp"

namespace bulkhead {
namespace {

Image to_image(const torch::Tensor& chw) {
  auto pixels = ((chw.to(torch::kCPU, torch::kFloat32) + 1) * 127.5).round().clamp(0, 255).to(torch::kUInt8);
  pixels = pixels.permute({1, 2, 0}).contiguous();
  Image image;
  image.height = static_cast<int>(pixels.size(0));
  image.width = static_cast<int>(pixels.size(1));
  image.data.assign(pixels.data_ptr<std::uint8_t>(), pixels.data_ptr<std::uint8_t>() + pixels.numel());
  return image;
}

// The prompt, drawn above the image; the full UTF-8 prompt is in the .txt beside it.
Image with_label(const Image& image, const std::string& prompt) {
  const int scale = 2, margin = 4;
  const int strip = (text_height(prompt) + margin) * scale;
  Image out;
  out.width = image.width;
  out.height = image.height + strip;
  out.data.assign(std::size_t(out.width) * out.height * 3, 255);
  std::copy(image.data.begin(), image.data.end(), out.data.begin() + std::size_t(strip) * out.width * 3);
  draw_text(out, margin, margin, prompt, scale);
  return out;
}

}  // namespace

Image make_grid(const std::vector<Image>& tiles, int columns, int gap) {
  const int rows = static_cast<int>((tiles.size() + columns - 1) / columns);
  const int w = tiles[0].width, h = tiles[0].height;
  Image grid;
  grid.width = columns * w + (columns + 1) * gap;
  grid.height = rows * h + (rows + 1) * gap;
  grid.data.assign(std::size_t(grid.width) * grid.height * 3, 255);
  for (std::size_t i = 0; i < tiles.size(); ++i) {
    const int x0 = gap + int(i % columns) * (w + gap), y0 = gap + int(i / columns) * (h + gap);
    for (int y = 0; y < h; ++y)
      std::copy_n(&tiles[i].data[std::size_t(y) * w * 3], w * 3, &grid.data[(std::size_t(y0 + y) * grid.width + x0) * 3]);
  }
  return grid;
}

void write_prompt_list(const std::filesystem::path& path, const std::vector<std::string>& prompts) {
  std::string text;
  for (auto& prompt : prompts) text += prompt + "\n";
  write_file_atomically(path, text);
}

std::vector<Image> generate(FlowModel& model, const Vocabulary& vocab, const std::vector<std::string>& prompts,
                            const SampleOptions& options) {
  const auto& o = model->options();
  const auto device = model->parameters().front().device();
  std::vector<std::int64_t> ids;
  for (auto& prompt : prompts) {
    auto encoded = vocab.encode(prompt, o.max_tokens);
    for (int i = 0; i < options.per_prompt; ++i) ids.insert(ids.end(), encoded.begin(), encoded.end());
  }
  const auto count = static_cast<std::int64_t>(prompts.size()) * options.per_prompt;
  auto tokens = torch::tensor(ids, torch::kInt64).view({count, o.max_tokens}).to(device);

  auto rng = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  const bool was_training = model->is_training();
  model->eval();
  torch::Tensor images;
  {
    AutocastScope autocast(options.amp && device.is_cuda());
    images = sample_images(model, tokens, options.steps, options.guidance, rng);
  }
  model->train(was_training);

  std::vector<Image> out;
  for (std::int64_t i = 0; i < count; ++i) out.push_back(to_image(images[i]));
  return out;
}

SampleGrid write_sample_grid(const std::filesystem::path& stem, FlowModel& model, const Vocabulary& vocab,
                             const std::vector<std::string>& prompts, const SampleOptions& options) {
  auto tiles = generate(model, vocab, prompts, options);
  const int factor = std::max(1, 128 / tiles[0].width);
  for (auto& tile : tiles) tile = upscale(tile, factor);
  for (std::size_t p = 0; p < prompts.size(); ++p) {
    const std::vector<Image> row(tiles.begin() + p * options.per_prompt, tiles.begin() + (p + 1) * options.per_prompt);
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "-p%02zu.png", p);
    write_image(stem.string() + suffix, with_label(make_grid(row, options.per_prompt, 4), prompts[p]));
  }
  SampleGrid grid{stem.string() + ".png", make_grid(tiles, options.per_prompt, 4)};
  write_image(grid.png, grid.image);
  write_prompt_list(stem.string() + ".txt", prompts);
  return grid;
}

}  // namespace bulkhead
