// rank_group.hpp — the ranks of a data-parallel run, and the few collectives the trainer needs,
// on LibTorch's c10d (Gloo on the CPU; NCCL where LibTorch has it and the model is on CUDA).
//
//   RankGroup ranks = RankGroup::join({rank, world_size, "file:runs/x/.rendezvous-1"});
//   ranks.broadcast(parameters);          // rank 0's values, everywhere
//   ranks.reduce_to_leader(gradients);    // the sum of every rank's, on rank 0
//   std::string decided = ranks.broadcast_bytes(mine);  // rank 0's bytes, everywhere
//
// Every call is collective: each rank makes the same calls in the same order. A peer that dies
// (SIGKILL, OOM, a machine lost) makes the pending call throw RankLost on the others.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace bulkhead {

// Another rank is gone: this rank cannot go on, and must not save anything of its own.
struct RankLost : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct RankSettings {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0, local_world_size = 1;  // among the ranks on this machine: its GPU, its share of the threads
  // Where the ranks meet: "file:PATH" (a FileStore: one machine) or "tcp:HOST:PORT" (a TCPStore,
  // served by rank 0: several machines).
  std::string store;
  std::chrono::milliseconds timeout{std::chrono::minutes(30)};  // a collective that waits longer fails
};

class RankGroup {
 public:
  // Meets the other ranks (waits up to settings.timeout for them all) and builds the process group.
  static std::unique_ptr<RankGroup> join(const RankSettings& settings, bool cuda);
  ~RankGroup();

  int rank() const { return settings_.rank; }
  int world_size() const { return settings_.world_size; }
  bool leader() const { return settings_.rank == 0; }
  const std::string& backend() const { return backend_; }

  void broadcast(torch::Tensor& tensor);          // from rank 0, in place
  void reduce_to_leader(torch::Tensor& tensor);   // summed into rank 0's tensor (the others' are undefined after)
  void allreduce_sum(torch::Tensor& tensor);
  std::string broadcast_bytes(const std::string& bytes);  // rank 0's, on every rank

 private:
  struct Impl;
  RankGroup(RankSettings settings, std::unique_ptr<Impl> impl, std::string backend);
  RankSettings settings_;
  std::unique_ptr<Impl> impl_;
  std::string backend_;
};

// Rows [begin, begin + count) of a global batch of `rows` that rank `rank` of `world_size` trains
// on: an equal share, the first ranks taking one more where it does not divide.
struct Shard {
  std::int64_t begin = 0, count = 0;
};
Shard shard_of(std::int64_t rows, int rank, int world_size);

}  // namespace bulkhead
