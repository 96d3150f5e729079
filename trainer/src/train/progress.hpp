// progress.hpp — where training is, for a person watching.
//
// On a terminal: one line, redrawn each step (epoch, step, loss, samples/s, ETA).
// Otherwise (a log file, CI): a plain log line every log_every steps.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include <spdlog/spdlog.h>

namespace bulkhead {

struct ProgressState {
  int epoch = 0, max_epochs = 0;
  int local_step = 0, epoch_length = 0;
  std::int64_t global_step = 0, total_steps = 0;
  double loss = 0, samples_per_s = 0;
};

class Progress {
 public:
  Progress(std::int64_t first_step, int log_every);
  void update(const ProgressState& state);
  // Ends the redrawn line so that a log message starts on a clean one.
  void clear();

 private:
  bool tty_;
  int log_every_;
  bool line_open_ = false;
  std::int64_t first_step_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace bulkhead
