// fault_policy.hpp — when a supervised plugin may start again, and when it is off for good.
//
// A pure object: no threads, no I/O, no logging; time comes from the clock it is given, so a
// test drives it with a fake one. SupervisedPlugin holds one under its lock and acts on what it says.
//
//   FaultPolicy policy({std::chrono::milliseconds(100), 5, 60.0});
//   policy.host_lost(started);                      // a crash or hang: the next start waits 100 ms, 200, ...
//   if (policy.count_fault("on_step_end crashed")) ...   // true: too many faults, now quarantined
//   if (policy.may_start()) restart();
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <string>

namespace bulkhead {

class FaultPolicy {
 public:
  using Clock = std::chrono::steady_clock;
  using Now = std::function<Clock::time_point()>;

  struct Limits {
    std::chrono::milliseconds restart_backoff{100};  // before the first restart; doubles per fault
    long max_restarts = 5;                           // faults tolerated within restart_window_s
    double restart_window_s = 60;
  };
  static constexpr std::chrono::milliseconds kMaxBackoff{10000};
  // A host that has served this long without a fault has its backoff reset when it is lost.
  static constexpr std::chrono::seconds kStableAfter{30};

  explicit FaultPolicy(Limits limits, Now now = Clock::now);

  // A start failed (crashed, or no hello in time): the next waits for the backoff, which doubles.
  void start_failed();
  // The running host, up since `started`, crashed or hung and is being killed: the next start
  // waits for the backoff, which doubles unless told not to (a batch's fault, not yet anyone's).
  void host_lost(Clock::time_point started, bool doubles = true);
  // Counts a fault in the sliding window, forgetting those older than it. Returns true when this
  // one is over max_restarts and has just quarantined the plugin; `last` ("hook what") is named
  // in the reason.
  bool count_fault(const std::string& last);
  // Quarantines at once (a load failure); false when already quarantined.
  bool quarantine(std::string reason);
  // The user's reload: faults forgiven, backoff reset, quarantine lifted, a start allowed now.
  void forgive();

  // Not quarantined, and any backoff has passed.
  bool may_start() const;
  // When the backoff lets the next start begin (a call waits for it, up to its deadline).
  Clock::time_point next_start() const { return next_start_; }
  bool quarantined() const { return quarantined_; }
  const std::string& quarantine_reason() const { return quarantine_reason_; }
  // The delay the next lost host or failed start will impose.
  std::chrono::milliseconds next_backoff() const { return backoff_; }

 private:
  void back_off(std::chrono::milliseconds floor);

  Limits limits_;
  Now now_;
  std::chrono::milliseconds backoff_;
  Clock::time_point next_start_{};
  std::deque<Clock::time_point> recent_faults_;
  bool quarantined_ = false;
  std::string quarantine_reason_;
};

}  // namespace bulkhead
