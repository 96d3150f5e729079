#include "train/progress.hpp"

#include <unistd.h>

#include <cstdio>
#include <string>

#include "common/log.hpp"

namespace bulkhead {
namespace {

std::string duration(double seconds) {
  const auto s = static_cast<long>(seconds + 0.5);
  char text[32];
  if (s >= 3600) std::snprintf(text, sizeof text, "%ldh%02ldm", s / 3600, s / 60 % 60);
  else std::snprintf(text, sizeof text, "%ldm%02lds", s / 60, s % 60);
  return text;
}

}  // namespace

Progress::Progress(std::int64_t first_step, int log_every)
    : tty_(::isatty(STDERR_FILENO)), log_every_(log_every), first_step_(first_step), log_(logger("trainer")) {}

void Progress::update(const ProgressState& s) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const auto done = s.global_step + 1 - first_step_;
  const double eta = done > 0 ? elapsed / done * double(s.total_steps - s.global_step - 1) : 0;
  char line[160];
  std::snprintf(line, sizeof line, "epoch %d/%d  step %d/%d  loss %.4f  %.1f samples/s  ETA %s", s.epoch + 1,
                s.max_epochs, s.local_step + 1, s.epoch_length, s.loss, s.samples_per_s, duration(eta).c_str());
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line);
    std::fflush(stderr);
    line_open_ = true;
  } else if ((s.global_step + 1) % log_every_ == 0 || s.local_step + 1 == s.epoch_length) {
    log_->info("{}", line);
  }
}

void Progress::clear() {
  if (!line_open_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  line_open_ = false;
}

}  // namespace bulkhead
