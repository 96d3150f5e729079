#include "train/progress.hpp"

#include <unistd.h>

#include <cstdio>

#include "common/log.hpp"

namespace bulkhead {
namespace {

// Weight of the newest step in the smoothed loss: about the last 50 steps count.
constexpr double kSmoothing = 0.02;

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

void Progress::add_sampling_time(double seconds) {
  sampling_seconds_ += seconds;
  ++samplings_;
}

std::string Progress::line(const ProgressState& s, double elapsed) {
  smoothed_loss_ = smoothed_loss_ < 0 ? s.loss : smoothed_loss_ + kSmoothing * (s.loss - smoothed_loss_);
  const auto done = s.global_step + 1 - first_step_;
  const double per_step = done > 0 ? (elapsed - sampling_seconds_) / double(done) : 0;
  // Before the first grid, its time is unknown: the ETA then counts steps only.
  const double per_sampling = samplings_ > 0 ? sampling_seconds_ / samplings_ : 0;
  const double eta = per_step * double(s.total_steps - s.global_step - 1) + per_sampling * s.samplings_left;
  char text[200];
  std::snprintf(text, sizeof text, "epoch %d/%d  step %d/%d  loss %.4f (smoothed %.4f)  %.1f samples/s  %s elapsed, ETA %s",
                s.epoch + 1, s.max_epochs, s.local_step + 1, s.epoch_length, s.loss, smoothed_loss_, s.samples_per_s,
                duration(elapsed).c_str(), duration(eta).c_str());
  return text;
}

void Progress::update(const ProgressState& s) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::string text = line(s, elapsed);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", text.c_str());
    std::fflush(stderr);
    line_open_ = true;
  } else if ((s.global_step + 1) % log_every_ == 0 || s.local_step + 1 == s.epoch_length) {
    log_->info("{}", text);
  }
}

void Progress::clear() {
  if (!line_open_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  line_open_ = false;
}

}  // namespace bulkhead
