// stop_signals.hpp — Ctrl-C, SIGTERM and SIGHUP ask a training (or a study's trial) to stop cleanly.
#pragma once

#include <csignal>
#include <iterator>

#include "train/trainer.hpp"

namespace bulkhead {

// Ctrl-C, and what `docker stop`, a closed SSH session or a Slurm time limit send.
inline constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};

// The first signal asks the trainer to stop cleanly; a second one of the same kind ends the process at once.
inline void on_stop_signal(int signal) {
  request_interrupt(signal);
  std::signal(signal, SIG_DFL);
}

// Installs on_stop_signal for the life of the object, then puts the earlier handlers back.
class StopSignals {
 public:
  StopSignals() {
    clear_interrupt();
    for (std::size_t i = 0; i < std::size(kStopSignals); ++i) previous_[i] = std::signal(kStopSignals[i], on_stop_signal);
  }
  ~StopSignals() {
    for (std::size_t i = 0; i < std::size(kStopSignals); ++i) std::signal(kStopSignals[i], previous_[i]);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  void (*previous_[std::size(kStopSignals)])(int);
};

}  // namespace bulkhead
