#include "train/loader.hpp"

#include <algorithm>
#include <cstring>
#include <random>

#include "distributed/rank_group.hpp"
#include "supervisor/plugin_runner.hpp"
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
  batches_ = batches_per_epoch(order_.size(), options_.batch_size);
  slots_.resize(batches_);
  next_claim_ = next_consume_ = std::min(batches_, options_.first_batch);
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
    int batch;
    {
      std::unique_lock lock(mutex_);
      room_.wait(lock, [&] {
        return stopping_ || next_claim_ >= batches_ || next_claim_ < next_consume_ + options_.prefetch_batches;
      });
      if (stopping_ || next_claim_ >= batches_) return;
      batch = next_claim_++;
    }
    try {
      Batch prepared = prepare(batch);
      std::lock_guard lock(mutex_);
      slots_[batch] = std::move(prepared);
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!failure_) failure_ = std::current_exception();
    }
    ready_.notify_all();
  }
}

Batch EpochLoader::prepare(int batch) const {
  const std::size_t batch_begin = std::size_t(batch) * options_.batch_size;
  const std::size_t batch_end = std::min(order_.size(), batch_begin + options_.batch_size);
  const Shard shard = shard_of(static_cast<std::int64_t>(batch_end - batch_begin), options_.rank, options_.world_size);
  const std::size_t begin = batch_begin + shard.begin, end = begin + shard.count;
  std::vector<Image> images;
  std::vector<std::string> captions;
  for (std::size_t p = begin; p < end; ++p) {
    images.push_back(data_.examples[order_[p]].image);
    captions.push_back(data_.examples[order_[p]].caption);
  }
  if (transforms_ && !images.empty()) transform(images, captions);

  const auto count = static_cast<std::int64_t>(end - begin);
  const auto size = static_cast<std::int64_t>(data_.examples[0].image.width);
  Batch out;
  out.first_row = shard.begin;
  out.global_rows = static_cast<std::int64_t>(batch_end - batch_begin);
  out.images = torch::empty({count, 3, size, size}, torch::kFloat32);
  out.tokens = torch::empty({count, options_.max_tokens}, torch::kInt64);
  for (std::int64_t row = 0; row < count; ++row) {
    out.captions.push_back(std::move(captions[row]));
    fill(out, row, order_[begin + row], images[row]);
  }
  return out;
}

void EpochLoader::transform(std::vector<Image>& images, std::vector<std::string>& captions) const {
  if (options_.batch_transforms) {
    images = transforms_->transform_pil_images(std::move(images));
    captions = transforms_->transform_captions(std::move(captions));
    return;
  }
  for (std::size_t i = 0; i < images.size(); ++i) {
    images[i] = transforms_->transform_pil_image(std::move(images[i]));
    captions[i] = transforms_->transform_caption(std::move(captions[i]));
  }
}

void EpochLoader::fill(Batch& batch, std::int64_t row, std::size_t index, const Image& transformed) const {
  // A transform may hand back another size or mode; the model takes only its own.
  const int size = data_.examples[index].image.width;
  Image image = to_rgb(transformed);
  if (image.width != size || image.height != size) image = center_crop_resize(image, size);

  float* pixels = batch.images[row].data_ptr<float>();
  const std::size_t plane = std::size_t(size) * size;
  for (std::size_t p = 0; p < plane; ++p)
    for (int c = 0; c < 3; ++c) pixels[c * plane + p] = image.data[p * 3 + c] / 127.5f - 1.0f;

  std::mt19937_64 rng(mix(options_.seed, static_cast<std::uint64_t>(epoch_), index + 1));
  const bool dropped = std::uniform_real_distribution<double>(0, 1)(rng) < options_.cond_dropout;
  const auto tokens = vocab_.encode(dropped ? "" : batch.captions[row], options_.max_tokens);
  std::memcpy(batch.tokens[row].data_ptr<std::int64_t>(), tokens.data(), tokens.size() * sizeof(std::int64_t));
}

std::optional<Batch> EpochLoader::next() {
  if (next_consume_ >= batches_) return std::nullopt;
  std::optional<Batch> batch;
  {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return failure_ || slots_[next_consume_].has_value(); });
    if (failure_) std::rethrow_exception(failure_);
    batch = std::move(slots_[next_consume_]);
    slots_[next_consume_].reset();
    ++next_consume_;
  }
  room_.notify_all();
  return batch;
}

}  // namespace bulkhead
