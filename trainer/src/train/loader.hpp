// loader.hpp — one epoch of batches, prepared by worker threads ahead of the training step.
//
//   EpochLoader loader(train, vocab, &plugins, options, epoch);   // plugins: nullptr = no transforms
//   while (auto batch = loader.next()) { ... }
//
// Per batch, in a worker: the batch's cached images go through the plugins' transform_pil_images,
// its captions through transform_captions (one message per plugin and batch; one per sample with
// batch_transforms off); then per sample the image is normalised to [-1, 1], the caption maybe
// dropped (cond_dropout) and tokenised.
//
// Determinism: the epoch's order comes from (seed, epoch) alone, each sample's randomness from
// (seed, epoch, sample), and batches are handed out in order however the workers were scheduled.
// So the ranks of a data-parallel run, each loading its rows of every batch, together load the
// very batches one process would.
// Workers run up to prefetch_batches batches ahead of the training loop, so plugin latency
// overlaps the step and memory stays bounded.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "train/dataset.hpp"
#include "train/vocab.hpp"

namespace bulkhead {

class PluginRunner;

struct Batch {
  torch::Tensor images;               // B x 3 x H x W, float32 in [-1, 1], on the CPU
  torch::Tensor tokens;               // B x max_tokens, int64
  std::vector<std::string> captions;  // after transform_caption (before dropout)
  // A data-parallel rank holds rows [first_row, first_row + B) of the global batch of global_rows.
  std::int64_t first_row = 0, global_rows = 0;
};

struct LoaderOptions {
  int batch_size = 1;
  int workers = 1;
  int max_tokens = 24;
  double cond_dropout = 0;  // validation uses 0
  std::uint64_t seed = 0;
  bool shuffle = true;      // validation keeps data order
  int first_batch = 0;      // resuming part-way through an epoch
  int prefetch_batches = 4; // batches prepared ahead of the one being trained on
  bool batch_transforms = true;  // one message per plugin and batch, not one per sample
  // A data-parallel rank loads only its share of each batch (batch_size stays the global batch).
  int rank = 0, world_size = 1;
};

// ceil(examples / batch_size): the last batch may be short, so every sample is trained on.
int batches_per_epoch(std::size_t examples, int batch_size);

class EpochLoader {
 public:
  EpochLoader(const Dataset& data, const Vocabulary& vocab, PluginRunner* transforms, LoaderOptions options,
              int epoch);
  ~EpochLoader();
  EpochLoader(const EpochLoader&) = delete;
  EpochLoader& operator=(const EpochLoader&) = delete;

  // The next batch, in order; std::nullopt after the last. Rethrows a worker's exception.
  std::optional<Batch> next();

 private:
  void work();
  Batch prepare(int batch) const;
  // The batch's images and captions after the plugins' transforms.
  void transform(std::vector<Image>& images, std::vector<std::string>& captions) const;
  // Sample `row` of the batch: normalised pixels, caption dropout, tokens.
  void fill(Batch& batch, std::int64_t row, std::size_t index, const Image& image) const;

  const Dataset& data_;
  const Vocabulary& vocab_;
  PluginRunner* transforms_;
  LoaderOptions options_;
  int epoch_;
  std::vector<std::size_t> order_;  // example index for each position in the epoch
  int batches_ = 0;

  std::mutex mutex_;
  std::condition_variable ready_, room_;
  std::vector<std::optional<Batch>> slots_;  // one per batch of the epoch
  int next_claim_ = 0;     // next batch a worker takes
  int next_consume_ = 0;   // next batch next() hands out
  bool stopping_ = false;
  std::exception_ptr failure_;
  std::vector<std::thread> workers_;
};

}  // namespace bulkhead
