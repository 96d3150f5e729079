#include "train/sampling.hpp"

#include <algorithm>
#include <fstream>

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

}  // namespace

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

std::filesystem::path write_sample_grid(const std::filesystem::path& stem, FlowModel& model, const Vocabulary& vocab,
                                        const std::vector<std::string>& prompts, const SampleOptions& options) {
  auto tiles = generate(model, vocab, prompts, options);
  const int factor = std::max(1, 128 / tiles[0].width);
  for (auto& tile : tiles) tile = upscale(tile, factor);
  auto png = stem;
  png += ".png";
  write_png(png, make_grid(tiles, options.per_prompt, 4));
  auto text = stem;
  text += ".txt";
  std::ofstream out(text);
  for (auto& prompt : prompts) out << prompt << "\n";
  return png;
}

}  // namespace bulkhead
