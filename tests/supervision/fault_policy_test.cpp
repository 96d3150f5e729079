// The fault policy alone, on a fake clock: backoff, the sliding window, quarantine, forgiveness.
#include <gtest/gtest.h>

#include "supervisor/fault_policy.hpp"

namespace bulkhead {
namespace {

using namespace std::chrono_literals;
using Clock = FaultPolicy::Clock;

struct FakeClock {
  Clock::time_point now = Clock::time_point() + 1h;  // far from the epoch, as steady_clock is
  FaultPolicy::Now source() {
    return [this] { return now; };
  }
};

class FaultPolicyTest : public ::testing::Test {
 protected:
  FakeClock clock;
  FaultPolicy policy{{100ms, 3, 60.0}, clock.source()};

  // A host lost after serving `served`, counted as a fault as SupervisedPlugin counts it.
  bool lose_host(std::chrono::milliseconds served = 1ms) {
    policy.host_lost(clock.now - served);
    return policy.count_fault("on_step_end crashed");
  }
};

TEST_F(FaultPolicyTest, MayStartAtFirst) { EXPECT_TRUE(policy.may_start()); }

// A batch's lost host (not yet anyone's fault) waits for the backoff but does not double it.
TEST_F(FaultPolicyTest, AHostLostWithoutDoublingWaitsTheSameBackoff) {
  policy.host_lost(clock.now - 1ms, false);
  EXPECT_FALSE(policy.may_start());
  clock.now += 100ms;
  EXPECT_TRUE(policy.may_start());
  EXPECT_EQ(policy.next_backoff(), 100ms);
  policy.host_lost(clock.now - 1ms);
  EXPECT_EQ(policy.next_backoff(), 200ms);
}

TEST_F(FaultPolicyTest, NeverRestartsBeforeTheBackoff) {
  lose_host();
  EXPECT_FALSE(policy.may_start());
  clock.now += 99ms;
  EXPECT_FALSE(policy.may_start());
  clock.now += 1ms;
  EXPECT_TRUE(policy.may_start());
}

TEST_F(FaultPolicyTest, BackoffDoublesPerLostHost) {
  EXPECT_EQ(policy.next_backoff(), 100ms);
  for (auto expected : {200ms, 400ms, 800ms}) {
    policy.host_lost(clock.now);
    EXPECT_EQ(policy.next_backoff(), expected);
  }
  clock.now += 399ms;
  EXPECT_FALSE(policy.may_start()) << "the third loss waits 400 ms";
  clock.now += 1ms;
  EXPECT_TRUE(policy.may_start());
}

TEST_F(FaultPolicyTest, BackoffStopsAtTenSeconds) {
  for (int i = 0; i < 20; ++i) policy.host_lost(clock.now);
  EXPECT_EQ(policy.next_backoff(), FaultPolicy::kMaxBackoff);
  EXPECT_EQ(FaultPolicy::kMaxBackoff, 10s);
  clock.now += 10s;
  EXPECT_TRUE(policy.may_start());
}

TEST_F(FaultPolicyTest, HostThatServedLongStartsOverFromTheFirstBackoff) {
  for (int i = 0; i < 4; ++i) policy.host_lost(clock.now);
  policy.host_lost(clock.now - FaultPolicy::kStableAfter - 1s);
  EXPECT_EQ(policy.next_backoff(), 200ms);
  clock.now += 100ms;
  EXPECT_TRUE(policy.may_start());
}

TEST_F(FaultPolicyTest, FailedStartBacksOffEvenFromZero) {
  FaultPolicy no_backoff({0ms, 3, 60.0}, clock.source());
  no_backoff.start_failed();
  EXPECT_EQ(no_backoff.next_backoff(), 1ms);
  no_backoff.start_failed();
  EXPECT_EQ(no_backoff.next_backoff(), 2ms);
  EXPECT_FALSE(no_backoff.may_start());
}

TEST_F(FaultPolicyTest, LostHostWithZeroBackoffRestartsAtOnce) {
  FaultPolicy no_backoff({0ms, 3, 60.0}, clock.source());
  no_backoff.host_lost(clock.now);
  EXPECT_EQ(no_backoff.next_backoff(), 0ms);
  EXPECT_TRUE(no_backoff.may_start());
}

TEST_F(FaultPolicyTest, QuarantinedOnceOverMaxRestartsWithinTheWindow) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(lose_host()) << "fault " << i + 1;
    clock.now += 10s;
  }
  EXPECT_TRUE(lose_host());
  EXPECT_TRUE(policy.quarantined());
  EXPECT_EQ(policy.quarantine_reason(), "4 faults within 60 s; last: on_step_end crashed");
  EXPECT_FALSE(lose_host()) << "quarantined once, not again";
  clock.now += 1h;
  EXPECT_FALSE(policy.may_start()) << "quarantine lasts until forgiven";
}

TEST_F(FaultPolicyTest, FaultsOlderThanTheWindowAreForgotten) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(policy.count_fault("on_log failed"));
    clock.now += 21s;
  }
  // The first fault is now 63 s old: out of the window, so this is the third within it, not the fourth.
  EXPECT_FALSE(policy.count_fault("on_log failed"));
  clock.now += 1s;
  EXPECT_TRUE(policy.count_fault("on_log failed")) << "four within 60 s";
}

TEST_F(FaultPolicyTest, FaultsWithoutRestartDoNotBackOff) {
  policy.count_fault("on_log sent an invalid reply");
  EXPECT_TRUE(policy.may_start());
  EXPECT_EQ(policy.next_backoff(), 100ms);
}

TEST_F(FaultPolicyTest, QuarantineAtOnceKeepsTheFirstReason) {
  EXPECT_TRUE(policy.quarantine("the plugin failed to load"));
  EXPECT_FALSE(policy.quarantine("something later"));
  EXPECT_EQ(policy.quarantine_reason(), "the plugin failed to load");
  EXPECT_FALSE(policy.may_start());
}

TEST_F(FaultPolicyTest, ForgiveLiftsQuarantineAndResetsEverything) {
  for (int i = 0; i < 4; ++i) lose_host();
  ASSERT_TRUE(policy.quarantined());
  policy.forgive();
  EXPECT_FALSE(policy.quarantined());
  EXPECT_EQ(policy.quarantine_reason(), "");
  EXPECT_TRUE(policy.may_start()) << "a reload starts at once, whatever the backoff was";
  EXPECT_EQ(policy.next_backoff(), 100ms);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(policy.count_fault("on_log failed")) << "the old faults are forgiven";
}

TEST_F(FaultPolicyTest, NegativeBackoffCountsAsZero) {
  FaultPolicy negative({-5ms, 3, 60.0}, clock.source());
  EXPECT_EQ(negative.next_backoff(), 0ms);
  negative.host_lost(clock.now);
  EXPECT_TRUE(negative.may_start());
}

}  // namespace
}  // namespace bulkhead
