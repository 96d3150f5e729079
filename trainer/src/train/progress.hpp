// progress.hpp — where training is, for a person watching.
//
// On a terminal: one line, redrawn each step (epoch, step, loss and its smoothed value, samples/s,
// elapsed time, ETA). Otherwise (a log file, CI): the same as a plain log line every log_every steps.
// The ETA counts the sample grids still to come at the time the earlier ones took.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace bulkhead {

struct ProgressState {
  int epoch = 0, max_epochs = 0;
  int local_step = 0, epoch_length = 0;
  std::int64_t global_step = 0, total_steps = 0;
  double loss = 0, samples_per_s = 0;
  int samplings_left = 0;  // sample grids still to write, the final one included
};

class Progress {
 public:
  Progress(std::int64_t first_step, int log_every);
  void update(const ProgressState& state);
  // Time spent writing samples, kept out of the time per step and counted per grid instead.
  void add_sampling_time(double seconds);
  // Ends the redrawn line so that a log message starts on a clean one.
  void clear();

  // Exposed for tests: the line update() shows, with elapsed seconds given.
  std::string line(const ProgressState& state, double elapsed);

 private:
  bool tty_;
  int log_every_;
  bool line_open_ = false;
  std::int64_t first_step_;
  double smoothed_loss_ = -1;  // exponential moving average; -1 before the first step
  double sampling_seconds_ = 0;
  int samplings_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace bulkhead
