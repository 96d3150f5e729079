#include "train/loader.hpp"

#include <algorithm>
#include <cstring>
#include <random>

#include "plugins/plugin_runner.hpp"
#include "train/image_io.hpp"

namespace bulkhead {
namespace {

// SplitMix64: a well-mixed seed from a few integers, so nearby epochs and samples get unrelated streams.
std::uint64_t mix(std::uint64_t a, std::uint64_t b, std::uint64_t c = 0) {
  std::uint64_t z = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^
                    (c + 0x94D049BB133111EBull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

int batches_per_epoch(std::size_t examples, int batch_size) {
  return static_cast<int>((examples + batch_size - 1) / batch_size);
}

EpochLoader::EpochLoader(const Dataset& data, const Vocabulary& vocab, PluginRunner* transforms,
                         LoaderOptions options, int epoch)
    : data_(data), vocab_(vocab), transforms_(transforms), options_(options), epoch_(epoch) {
  order_.resize(data_.examples.size());
  for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = i;
  if (options_.shuffle) {
    // Fisher-Yates written out: std::shuffle's result is not specified by the standard.
    std::mt19937_64 rng(mix(options_.seed, static_cast<std::uint64_t>(epoch_)));
    for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng() % i]);
  }
  slots_.resize(order_.size());
  next_claim_ = next_consume_ = std::min(order_.size(), std::size_t(options_.first_batch) * options_.batch_size);
  window_ = std::size_t(options_.batch_size) * (options_.workers + 2);
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { work(); });
}

EpochLoader::~EpochLoader() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  room_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void EpochLoader::work() {
  while (true) {
    std::size_t position;
    {
      std::unique_lock lock(mutex_);
      room_.wait(lock, [&] { return stopping_ || next_claim_ >= order_.size() || next_claim_ < next_consume_ + window_; });
      if (stopping_ || next_claim_ >= order_.size()) return;
      position = next_claim_++;
    }
    try {
      Prepared prepared = prepare(position);
      std::lock_guard lock(mutex_);
      slots_[position] = std::move(prepared);
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!failure_) failure_ = std::current_exception();
    }
    ready_.notify_all();
  }
}

EpochLoader::Prepared EpochLoader::prepare(std::size_t position) const {
  const std::size_t index = order_[position];
  const Example& example = data_.examples[index];
  std::mt19937_64 rng(mix(options_.seed, static_cast<std::uint64_t>(epoch_), index + 1));

  Image image = example.image;
  std::string caption = example.caption;
  if (transforms_) {
    image = transforms_->transform_pil_image(std::move(image));
    caption = transforms_->transform_caption(std::move(caption));
  }
  // A transform may hand back another size or mode; the model takes only its own.
  const int size = example.image.width;
  image = to_rgb(image);
  if (image.width != size || image.height != size) image = center_crop_resize(image, size);

  Prepared out;
  const std::size_t plane = std::size_t(size) * size;
  out.pixels.resize(3 * plane);
  for (std::size_t p = 0; p < plane; ++p)
    for (int c = 0; c < 3; ++c) out.pixels[c * plane + p] = image.data[p * 3 + c] / 127.5f - 1.0f;
  const bool dropped = std::uniform_real_distribution<double>(0, 1)(rng) < options_.cond_dropout;
  out.tokens = vocab_.encode(dropped ? "" : caption, options_.max_tokens);
  out.caption = std::move(caption);
  return out;
}

std::optional<Batch> EpochLoader::next() {
  if (next_consume_ >= order_.size()) return std::nullopt;
  const std::size_t begin = next_consume_;
  const std::size_t end = std::min(order_.size(), begin + options_.batch_size);
  std::vector<Prepared> samples;
  {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] {
      if (failure_) return true;
      for (std::size_t p = begin; p < end; ++p)
        if (!slots_[p]) return false;
      return true;
    });
    if (failure_) std::rethrow_exception(failure_);
    for (std::size_t p = begin; p < end; ++p) {
      samples.push_back(std::move(*slots_[p]));
      slots_[p].reset();
    }
    next_consume_ = end;
  }
  room_.notify_all();

  const auto count = static_cast<std::int64_t>(samples.size());
  const auto size = static_cast<std::int64_t>(data_.examples[0].image.width);
  Batch batch;
  batch.images = torch::empty({count, 3, size, size}, torch::kFloat32);
  batch.tokens = torch::empty({count, options_.max_tokens}, torch::kInt64);
  for (std::int64_t i = 0; i < count; ++i) {
    std::memcpy(batch.images[i].data_ptr<float>(), samples[i].pixels.data(), samples[i].pixels.size() * sizeof(float));
    std::memcpy(batch.tokens[i].data_ptr<std::int64_t>(), samples[i].tokens.data(),
                samples[i].tokens.size() * sizeof(std::int64_t));
    batch.captions.push_back(std::move(samples[i].caption));
  }
  return batch;
}

}  // namespace bulkhead
