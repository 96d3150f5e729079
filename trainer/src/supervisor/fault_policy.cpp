#include "supervisor/fault_policy.hpp"

#include <algorithm>
#include <utility>

namespace bulkhead {

FaultPolicy::FaultPolicy(Limits limits, Now now)
    : limits_(limits), now_(std::move(now)), backoff_(std::max(limits_.restart_backoff, std::chrono::milliseconds(0))) {
  limits_.restart_backoff = backoff_;
}

void FaultPolicy::back_off(std::chrono::milliseconds floor) {
  next_start_ = now_() + backoff_;
  backoff_ = std::min(std::max(backoff_ * 2, floor), kMaxBackoff);
}

// A failed start backs off at least 1 ms, then 2, 4, ...: a plugin that cannot start must not be
// started in a tight loop even with restart_backoff_ms 0.
void FaultPolicy::start_failed() { back_off(std::chrono::milliseconds(1)); }

void FaultPolicy::host_lost(Clock::time_point started, bool doubles) {
  if (now_() - started > kStableAfter) backoff_ = limits_.restart_backoff;
  if (doubles)
    back_off(std::chrono::milliseconds(0));
  else
    next_start_ = now_() + backoff_;
}

bool FaultPolicy::count_fault(const std::string& last) {
  const auto now = now_();
  recent_faults_.push_back(now);
  const auto window = std::chrono::duration<double>(limits_.restart_window_s);
  while (!recent_faults_.empty() && now - recent_faults_.front() > window) recent_faults_.pop_front();
  if (quarantined_ || long(recent_faults_.size()) <= limits_.max_restarts) return false;
  return quarantine(std::to_string(recent_faults_.size()) + " faults within " +
                    std::to_string(int(limits_.restart_window_s)) + " s; last: " + last);
}

bool FaultPolicy::quarantine(std::string reason) {
  if (quarantined_) return false;
  quarantined_ = true;
  quarantine_reason_ = std::move(reason);
  return true;
}

void FaultPolicy::forgive() {
  quarantined_ = false;
  quarantine_reason_.clear();
  recent_faults_.clear();
  backoff_ = limits_.restart_backoff;
  next_start_ = {};
}

bool FaultPolicy::may_start() const { return !quarantined_ && now_() >= next_start_; }

}  // namespace bulkhead
