// Every fault mode of the C++ fault plugin, of the Python SDK's fault-python plugin and of the raw
// (Python, no SDK) raw-fault plugin, in the transform hooks, a call observer and a notify
// observer, under on_failure skip and abort.
#include <gtest/gtest.h>

#include "support.hpp"

namespace bulkhead::test {
namespace {

enum class Counter { none, errors, timeouts, crashes, invalid_replies };

const char* counter_name(Counter c) {
  switch (c) {
    case Counter::errors: return "errors";
    case Counter::timeouts: return "timeouts";
    case Counter::crashes: return "crashes";
    case Counter::invalid_replies: return "invalid_replies";
    default: return "none";
  }
}

struct FaultCase {
  std::string plugin;      // fault | fault-python | raw-fault
  std::string mode;        // the "fault" option
  std::string hook;        // transform_caption | transform_pil_image | on_epoch_start | on_step_end
  Counter counter;         // where the fault is counted (none: not a fault, the call succeeds)
  bool restarts;           // the host is killed and started again
  std::string reason;      // what abort_reason says besides the plugin's name
  long protocol_errors = 0;
  int timeout_ms = 300;
  Json extra = Json::object();
  PluginLimits limits = {};
};

void PrintTo(const FaultCase& c, std::ostream* out) { *out << c.plugin << " " << c.mode << " in " << c.hook; }

std::string case_name(const testing::TestParamInfo<FaultCase>& info) {
  std::string name = info.param.plugin + "_" + info.param.mode + "_" + info.param.hook;
  for (auto& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

// Runs the hook once; true when the caller got its value back unchanged (or, for observers, returned).
bool drive(PluginRunner& runner, const std::string& hook) {
  if (hook == "transform_caption") return runner.transform_caption("a cat, sitting") == "a cat, sitting";
  if (hook == "transform_pil_image") {
    Image in = test_image();
    Image out = runner.transform_pil_image(in);
    return out.width == in.width && out.height == in.height && out.mode == in.mode && out.data == in.data;
  }
  if (hook == "on_epoch_start") {
    runner.call(hook, epoch_kwargs());
    return true;
  }
  // notify: returns at once; wait for the acknowledgement (or its failure) to be concluded
  const auto started = std::chrono::steady_clock::now();
  runner.notify(hook, step_kwargs());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(50)) << "notify waited";
  wait_until([&] {
    const Json r = plugin_report(runner);
    if (!r["hooks"].contains(hook)) return true;  // skipped (backoff)
    const Json& c = r["hooks"][hook];
    return c["ok"].get<long>() + c["errors"].get<long>() + c["timeouts"].get<long>() + c["crashes"].get<long>() +
               c["invalid_replies"].get<long>() >= c["calls"].get<long>();
  });
  return true;
}

PluginSettings case_settings(const FaultCase& c, bool abort, int every) {
  Json options = c.extra;
  options["fault"] = c.mode;
  options["every"] = every;
  if (c.plugin != "raw-fault") options["hooks"] = {c.hook};
  PluginSettings s = settings(c.plugin, options);
  s.abort_on_failure = abort;
  s.timeout_ms = c.timeout_ms;
  s.limits = c.limits;
  return s;
}

class FaultModes : public testing::TestWithParam<FaultCase> {};

// on_failure skip: the value passes through, the fault is counted where it belongs, the host is
// restarted (or kept) and used again.
TEST_P(FaultModes, SkipFallsBackCountsAndRecovers) {
  const FaultCase& c = GetParam();
  auto runner = make_runner(case_settings(c, false, 2));  // every 2nd call misbehaves

  ASSERT_TRUE(drive(*runner, c.hook));
  EXPECT_EQ(counter(*runner, c.hook, "ok"), 1) << plugin_report(*runner).dump(2);

  EXPECT_TRUE(drive(*runner, c.hook)) << "the value did not pass through unchanged";
  if (c.counter == Counter::none) {
    EXPECT_TRUE(wait_until([&] { return counter(*runner, c.hook, "ok") == 2; })) << plugin_report(*runner).dump(2);
  } else {
    EXPECT_TRUE(wait_until([&] { return counter(*runner, c.hook, counter_name(c.counter)) == 1; }))
        << plugin_report(*runner).dump(2);
    EXPECT_EQ(faults(*runner, c.hook), 1) << plugin_report(*runner).dump(2);
    EXPECT_FALSE(plugin_report(*runner)["hooks"][c.hook]["last_fault"].is_null());
  }
  EXPECT_TRUE(wait_until([&] { return plugin_report(*runner)["protocol_errors"].get<long>() >= c.protocol_errors; }));
  EXPECT_EQ(plugin_report(*runner)["protocol_errors"].get<long>(), c.protocol_errors) << plugin_report(*runner).dump(2);
  EXPECT_FALSE(runner->abort_reason());

  // Used again: the next call that reaches the plugin succeeds (after the restart, if there was one).
  EXPECT_TRUE(wait_until([&] { return counter(*runner, c.hook, "ok") >= (c.counter == Counter::none ? 3 : 2); },
                         std::chrono::seconds(10), [&] { drive(*runner, c.hook); }))
      << plugin_report(*runner).dump(2);
  EXPECT_EQ(plugin_report(*runner)["restarts"].get<long>(), c.restarts ? 1 : 0) << plugin_report(*runner).dump(2);
  EXPECT_FALSE(plugin_report(*runner)["quarantined"].get<bool>());
  EXPECT_EQ(zombies(), 0);
}

// on_failure abort: abort_reason names the plugin and the fault.
TEST_P(FaultModes, AbortNamesPluginAndFault) {
  const FaultCase& c = GetParam();
  if (c.counter == Counter::none) GTEST_SKIP() << c.mode << " is not a fault";
  auto runner = make_runner(case_settings(c, true, 1));
  EXPECT_TRUE(drive(*runner, c.hook));
  ASSERT_TRUE(wait_until([&] { return runner->abort_reason().has_value(); }));
  const std::string reason = *runner->abort_reason();
  EXPECT_NE(reason.find("'" + runner->names()[0] + "'"), std::string::npos) << reason;
  EXPECT_NE(reason.find(c.hook), std::string::npos) << reason;
  EXPECT_NE(reason.find(c.reason), std::string::npos) << reason;
}

std::vector<FaultCase> cpp_cases() {
  std::vector<FaultCase> cases;
  PluginLimits small_memory;
  small_memory.address_space_mb = 512;
  for (const std::string hook : {"transform_caption", "transform_pil_image", "on_epoch_start", "on_step_end"}) {
    cases.push_back({"fault", "segfault", hook, Counter::crashes, true, "signal 11"});
    cases.push_back({"fault", "abort", hook, Counter::crashes, true, "signal 6"});
    cases.push_back({"fault", "exit0", hook, Counter::crashes, true, "exit status 0"});
    cases.push_back({"fault", "exit3", hook, Counter::crashes, true, "exit status 3"});
    cases.push_back({"fault", "throw", hook, Counter::errors, false, "injected failure in " + hook});
    cases.push_back({"fault", "hang", hook, Counter::timeouts, true, "missed its deadline of 300 ms"});
    cases.push_back({"fault", "sleep", hook, Counter::timeouts, true, "missed its deadline of 300 ms", 0, 300,
                     {{"sleep_ms", 1500}}});
    cases.push_back({"fault", "flood", hook, Counter::none, false, "", 0, 5000});
    cases.push_back({"fault", "hog", hook, Counter::crashes, true, "crashed", 0, 5000, {}, small_memory});
  }
  cases.push_back({"fault", "wrong_size", "transform_pil_image", Counter::invalid_replies, false, "the image came back"});
  return cases;
}

// The same faults raised through the Python SDK: a Python exception is an error reply with its
// traceback; running out of address space is a MemoryError, which the SDK reports the same way.
std::vector<FaultCase> python_cases() {
  std::vector<FaultCase> cases;
  PluginLimits small_memory;
  small_memory.address_space_mb = 1024;
  for (const std::string hook : {"transform_caption", "transform_pil_image", "on_epoch_start", "on_step_end"}) {
    cases.push_back({"fault-python", "segfault", hook, Counter::crashes, true, "signal 11", 0, 3000});
    cases.push_back({"fault-python", "abort", hook, Counter::crashes, true, "signal 6", 0, 3000});
    cases.push_back({"fault-python", "exit0", hook, Counter::crashes, true, "exit status 0", 0, 3000});
    cases.push_back({"fault-python", "exit3", hook, Counter::crashes, true, "exit status 3", 0, 3000});
    cases.push_back({"fault-python", "throw", hook, Counter::errors, false, "injected failure in " + hook, 0, 3000});
    cases.push_back({"fault-python", "hang", hook, Counter::timeouts, true, "missed its deadline of 500 ms", 0, 500});
    cases.push_back({"fault-python", "sleep", hook, Counter::timeouts, true, "missed its deadline of 500 ms", 0, 500,
                     {{"sleep_ms", 1500}}});
    cases.push_back({"fault-python", "flood", hook, Counter::none, false, "", 0, 10000});
    cases.push_back({"fault-python", "hog", hook, Counter::errors, false, "MemoryError", 0, 10000, {}, small_memory});
  }
  cases.push_back({"fault-python", "wrong_size", "transform_pil_image", Counter::invalid_replies, false,
                   "the image came back", 0, 3000});
  return cases;
}

std::vector<FaultCase> raw_cases() {
  std::vector<FaultCase> cases;
  for (const std::string hook : {"transform_caption", "on_epoch_start"}) {
    cases.push_back({"raw-fault", "garbage", hook, Counter::invalid_replies, false, "invalid reply", 1, 3000});
    cases.push_back({"raw-fault", "truncated", hook, Counter::invalid_replies, false, "invalid reply", 1, 3000});
    cases.push_back({"raw-fault", "envelope", hook, Counter::invalid_replies, false, "invalid reply", 1, 3000});
    cases.push_back({"raw-fault", "schema", hook, Counter::invalid_replies, false, "breaks schemas/hooks.json", 0, 3000});
    cases.push_back({"raw-fault", "wrong_type", hook, Counter::invalid_replies, false, "breaks schemas/hooks.json", 0, 3000});
    cases.push_back({"raw-fault", "nan", hook, Counter::invalid_replies, false, "NaN", 0, 3000});
    cases.push_back({"raw-fault", "nan_control", hook, Counter::none, false, "", 1, 3000});
    cases.push_back({"raw-fault", "huge", hook, Counter::timeouts, true, "missed its deadline", 0, 3000});
    cases.push_back({"raw-fault", "unsolicited", hook, Counter::none, false, "", 1, 3000});
    cases.push_back({"raw-fault", "duplicate", hook, Counter::none, false, "", 1, 3000});
    cases.push_back({"raw-fault", "unknown_id", hook, Counter::timeouts, true, "missed its deadline of 500 ms", 1, 500});
    cases.push_back({"raw-fault", "error", hook, Counter::errors, false, "injected error", 0, 3000});
    cases.push_back({"raw-fault", "flood", hook, Counter::none, false, "", 0, 5000});
    cases.push_back({"raw-fault", "exit", hook, Counter::crashes, true, "exit status 3", 0, 3000});
    cases.push_back({"raw-fault", "hang", hook, Counter::timeouts, true, "missed its deadline of 300 ms"});
  }
  cases.push_back({"raw-fault", "schema", "transform_pil_image", Counter::invalid_replies, false, "breaks schemas/hooks.json", 0, 3000});
  cases.push_back({"raw-fault", "wrong_type", "transform_pil_image", Counter::invalid_replies, false, "breaks schemas/hooks.json", 0, 3000});
  cases.push_back({"raw-fault", "nan", "transform_pil_image", Counter::invalid_replies, false, "NaN", 0, 3000});
  cases.push_back({"raw-fault", "inf", "transform_pil_image", Counter::invalid_replies, false, "infinity", 0, 3000});
  cases.push_back({"raw-fault", "inf", "transform_caption", Counter::invalid_replies, false, "infinity", 0, 3000});
  cases.push_back({"raw-fault", "wrong_mode", "transform_pil_image", Counter::invalid_replies, false,
                   "the image came back L 8x8, not RGB 8x8", 0, 3000});
  // Attachments (docs/protocol.md, section 2.1): a plugin written against the bare protocol may
  // send an image's pixels as a frame of its own; one that names its frames wrongly is refused.
  cases.push_back({"raw-fault", "attached", "transform_pil_image", Counter::none, false, "", 0, 3000});
  for (const std::string fault : {"attachment_missing", "attachment_unnamed", "attachment_twice", "attachment_ext"})
    cases.push_back({"raw-fault", fault, "transform_pil_image", Counter::invalid_replies, false, "invalid reply", 1, 3000});
  cases.push_back({"raw-fault", "attachment_short", "transform_pil_image", Counter::invalid_replies, false,
                   "image data has 191 bytes, RGB 8x8 needs 192", 0, 3000});
  cases.push_back({"raw-fault", "bad_utf8", "transform_caption", Counter::invalid_replies, false, "not valid UTF-8", 0, 3000});
  cases.push_back({"raw-fault", "long_caption", "transform_caption", Counter::invalid_replies, false,
                   "the caption has 5000 bytes, over the limit of 4096", 0, 3000});
  cases.push_back({"raw-fault", "exit", "on_step_end", Counter::crashes, true, "exit status 3", 0, 3000});
  cases.push_back({"raw-fault", "garbage", "on_step_end", Counter::invalid_replies, false, "invalid reply", 1, 3000});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cpp, FaultModes, testing::ValuesIn(cpp_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Python, FaultModes, testing::ValuesIn(python_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Raw, FaultModes, testing::ValuesIn(raw_cases()), case_name);

}  // namespace
}  // namespace bulkhead::test
