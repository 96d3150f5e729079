// launcher.hpp — bulkhead train --nproc N: the process that starts a data-parallel run's ranks on
// this machine, watches them, and restarts them all from the last checkpoint when one dies.
//
//   LaunchOptions options;                 // ranks, where they meet, the train arguments they get
//   int status = launch_ranks(options);    // bulkhead train's exit status
//
// It holds the run folder for the whole run (the ranks see it as theirs: RunFolder::held_by_parent).
// Rank 0 inherits the terminal; the other ranks write to ranks/rank-N/ (train.log, console.log).
// A stop signal is passed on to every rank once; they stop together at the next step boundary.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace bulkhead {

// The exit status of a rank that lost the others (RankLost): not its own failure, restart it.
inline constexpr int kExitRankLost = 3;

struct LaunchOptions {
  int nproc = 1;                         // ranks on this machine
  int nnodes = 1, node_rank = 0;         // machines, and which one this is
  std::string master_addr = "127.0.0.1"; // several machines: where node 0's rank 0 serves the store
  int master_port = 29500;
  int max_rank_restarts = 3;
  std::filesystem::path run_dir;         // claimed and held by the caller
  std::filesystem::path resume;          // the checkpoint the first start continues ("" for none)
  std::vector<std::string> train_args;   // what every rank's `bulkhead train` gets, besides the rank's own
};

int launch_ranks(const LaunchOptions& options);

}  // namespace bulkhead
