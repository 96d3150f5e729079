// loader.hpp — one epoch of batches, prepared by worker threads.
//
//   EpochLoader loader(train, vocab, &plugins, options, epoch);   // plugins: nullptr = no transforms
//   while (auto batch = loader.next()) { ... }
//
// Per sample, in a worker: the cached image goes through the plugins'
// transform_pil_image, is normalised to [-1, 1]; the caption goes through
// transform_caption, maybe dropped (cond_dropout), and is tokenised.
//
// Determinism: the epoch's order comes from (seed, epoch) alone, each
// sample's randomness from (seed, epoch, sample), and batches are assembled
// in order however the workers were scheduled. A worker runs ahead of the
// training loop by a few batches at most, so memory stays bounded.
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
};

struct LoaderOptions {
  int batch_size = 1;
  int workers = 1;
  int max_tokens = 24;
  double cond_dropout = 0;  // validation uses 0
  std::uint64_t seed = 0;
  bool shuffle = true;      // validation keeps data order
  int first_batch = 0;      // resuming part-way through an epoch
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
  struct Prepared {
    std::vector<float> pixels;  // 3 x H x W
    std::vector<std::int64_t> tokens;
    std::string caption;
  };

  void work();
  Prepared prepare(std::size_t position) const;

  const Dataset& data_;
  const Vocabulary& vocab_;
  PluginRunner* transforms_;
  LoaderOptions options_;
  int epoch_;
  std::vector<std::size_t> order_;  // example index for each position in the epoch

  std::mutex mutex_;
  std::condition_variable ready_, room_;
  std::vector<std::optional<Prepared>> slots_;
  std::size_t next_claim_ = 0;     // next position a worker takes
  std::size_t next_consume_ = 0;   // first position of the next batch
  std::size_t window_ = 0;         // how far past next_consume_ workers may go
  bool stopping_ = false;
  std::exception_ptr failure_;
  std::vector<std::thread> workers_;
};

}  // namespace bulkhead
