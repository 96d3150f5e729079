// Handshake failures, quarantine, concurrent crashes, process hygiene, limits, outside kills.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>

#include "support.hpp"

namespace bulkhead::test {
namespace {

std::string start_error(const PluginSettings& s) {
  try {
    auto runner = make_runner(s);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(it started)";
}

std::string raw_mode(const std::string& mode) { return (plugins_dir() / "raw-fault" / mode).string(); }

TEST(Handshake, WrongProtocolVersionNamesBoth) {
  const auto error = start_error(settings(raw_mode("bad-version")));
  EXPECT_NE(error.find("the trainer speaks protocol 1-2, the plugin speaks protocol 99"), std::string::npos) << error;
  EXPECT_NE(error.find("docs/protocol.md, Versions"), std::string::npos) << error;
  EXPECT_NE(error.find("bad-version"), std::string::npos) << error;
}

// A hello's "protocols" lists every version the plugin speaks: none the trainer serves is
// refused naming both ranges; of several, the highest both speak is chosen.
TEST(Handshake, ProtocolsOnlyNewerThanTheTrainersAreRefusedNamingBothRanges) {
  const auto error = start_error(settings(raw_mode("future-versions")));
  EXPECT_NE(error.find("the trainer speaks protocol 1-2, the plugin speaks protocol 3-4"), std::string::npos) << error;
}

TEST(Handshake, TheHighestProtocolBothSpeakIsChosen) {
  auto runner = make_runner(settings(raw_mode("versions-range")));
  EXPECT_EQ(plugin_report(*runner)["protocol"], 2) << plugin_report(*runner).dump(2);
}

// A wrong PLAIN password never reaches the hello; when the wait for it ends, the reason names it.
TEST(Handshake, AWrongPasswordIsNamedWhenTheHelloWaitEnds) {
  auto s = settings(raw_mode("wrong-password"));
  s.abort_on_failure = true;
  const auto error = start_error(s);
  EXPECT_NE(error.find("no hello within 10 s (a connection with a wrong PLAIN user name or password was refused"),
            std::string::npos)
      << error;
}

TEST(Handshake, WrongTokenIsRefused) {
  const auto error = start_error(settings(raw_mode("bad-token")));
  EXPECT_NE(error.find("wrong token"), std::string::npos) << error;
}

TEST(Handshake, HelloOutOfSchemaIsRefused) {
  const auto error = start_error(settings(raw_mode("bad-hello")));
  EXPECT_NE(error.find("hello.schema.json"), std::string::npos) << error;
}

// A hello of the wrong shape is refused at once, with why, not after the 10 s hello timeout.
TEST(Handshake, MisshapenHelloIsRefusedAtOnce) {
  const auto began = std::chrono::steady_clock::now();
  const auto error = start_error(settings(raw_mode("hello-short")));
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(5));
  EXPECT_NE(error.find("its hello is malformed: its first message breaks the protocol: a request has 4 elements, "
                       "this one has 3"),
            std::string::npos)
      << error;
}

TEST(Handshake, LoadFailureExplainsItself) {
  const auto error = start_error(settings(raw_mode("exit-load")));
  EXPECT_NE(error.find("failed to load"), std::string::npos) << error;
  EXPECT_NE(error.find("refusing to load"), std::string::npos) << error;
}

// These two (and the wrong password above) wait out the 10 s hello timeout. A missing hello is a fault, not a loading error:
// under "abort" training does not begin; under "skip" it begins without the plugin, which is
// started again when a hook next needs it.
TEST(Handshake, NoHelloTimesOutAndAbortRefusesToStart) {
  const auto started = std::chrono::steady_clock::now();
  auto s = settings(raw_mode("no-hello"));
  s.abort_on_failure = true;
  const auto error = start_error(s);
  EXPECT_NE(error.find("no hello within 10 s"), std::string::npos) << error;
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(14));
  EXPECT_EQ(children().size(), 0u);
}

TEST(Handshake, LateHelloTimesOutAndSkipStartsWithoutThePlugin) {
  auto s = settings(raw_mode("late-hello"));
  s.restart_backoff_ms = 60000;  // no second start during this test
  auto runner = make_runner(s);
  EXPECT_EQ(children().size(), 0u);
  EXPECT_EQ(runner->transform_caption("a cat"), "a cat");
  const Json r = plugin_report(*runner);
  EXPECT_EQ(r["hooks"]["(start)"]["errors"].get<long>(), 1) << r.dump(2);
  EXPECT_NE(r["hooks"]["(start)"]["last_fault"].get<std::string>().find("no hello within 10 s"), std::string::npos) << r.dump(2);
  EXPECT_EQ(counter(*runner, "transform_caption", "skipped"), 1) << r.dump(2);
  EXPECT_FALSE(runner->abort_reason());
}

// A host that starts once, then exits 78 (cannot load) on restart, is quarantined at once.
TEST(Restart, LoadFailureOnRestartQuarantinesAtOnce) {
  LogCapture capture("plugins");
  auto s = settings(raw_mode("once-exit-load"), {{"fault", "exit"}});
  s.max_restarts = 100;
  auto runner = make_runner(s);
  EXPECT_EQ(runner->transform_caption("a cat"), "a cat");
  ASSERT_TRUE(wait_until([&] { return plugin_report(*runner)["quarantined"].get<bool>(); }, std::chrono::seconds(10),
                         [&] { runner->transform_caption("a cat"); }));
  const Json r = plugin_report(*runner);
  EXPECT_NE(r["quarantine_reason"].get<std::string>().find("failed to load"), std::string::npos) << r.dump(2);
  EXPECT_EQ(r["restarts"].get<long>(), 0) << r.dump(2);
  EXPECT_EQ(r["hooks"]["(start)"]["crashes"].get<long>(), 1) << r.dump(2);
  EXPECT_EQ(capture.sink->count("PLUGIN QUARANTINED"), 1);
  // and it stays off: no more starts
  for (int i = 0; i < 5; ++i) EXPECT_EQ(runner->transform_caption("a dog"), "a dog");
  EXPECT_EQ(plugin_report(*runner)["hooks"]["(start)"]["crashes"].get<long>(), 1);
  EXPECT_EQ(children().size(), 0u);
}

// Exit 78 after the welcome (configure failed) is not restarted either.
TEST(Restart, ExitSeventyEightAfterWelcomeQuarantinesAtOnce) {
  auto runner = make_runner(settings("raw-fault", {{"fault", "exit78"}}));
  EXPECT_EQ(runner->transform_caption("a cat"), "a cat");
  const Json r = plugin_report(*runner);
  EXPECT_TRUE(r["quarantined"].get<bool>()) << r.dump(2);
  EXPECT_NE(r["quarantine_reason"].get<std::string>().find("cannot configure"), std::string::npos) << r.dump(2);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(runner->transform_caption("a cat"), "a cat");
  EXPECT_EQ(plugin_report(*runner)["restarts"].get<long>(), 0);
}

// A restart that fails its handshake counts as a fault, backs off and ends in quarantine.
TEST(Restart, HandshakeFailureOnRestartEndsInQuarantine) {
  auto s = settings(raw_mode("once-bad-version"), {{"fault", "exit"}});
  s.max_restarts = 2;
  auto runner = make_runner(s);
  ASSERT_TRUE(wait_until([&] { return plugin_report(*runner)["quarantined"].get<bool>(); }, std::chrono::seconds(15),
                         [&] { runner->transform_caption("a cat"); }));
  const Json r = plugin_report(*runner);
  EXPECT_NE(r["quarantine_reason"].get<std::string>().find("protocol version mismatch"), std::string::npos) << r.dump(2);
  EXPECT_EQ(r["restarts"].get<long>(), 0) << r.dump(2);
}

// Several requests in flight when the host crashes: each fails, the host restarts exactly once.
TEST(Restart, ConcurrentCrashesInFlightOneRestart) {
  // The host waits 300 ms before crashing on the first request, so all four are in flight.
  auto s = settings("fault", {{"fault", "segfault"}, {"delay_ms", 300}, {"hooks", {"transform_caption"}}});
  s.timeout_ms = 5000;
  s.restart_backoff_ms = 500;  // no caller may restart it during the test
  auto runner = make_runner(s);
  constexpr int kThreads = 4;
  std::atomic<int> waiting{kThreads};
  std::atomic<int> unchanged{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < kThreads; ++i)
    callers.emplace_back([&, i] {
      --waiting;
      while (waiting.load() > 0) std::this_thread::yield();
      const std::string caption = "caption " + std::to_string(i);
      if (runner->transform_caption(caption) == caption) ++unchanged;
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(unchanged.load(), kThreads);
  const Json r = plugin_report(*runner);
  // The host died serving the first: that one is the crash, the others were lost with it.
  EXPECT_EQ(r["hooks"]["transform_caption"]["crashes"].get<long>(), 1) << r.dump(2);
  EXPECT_EQ(r["hooks"]["transform_caption"]["lost"].get<long>(), kThreads - 1) << r.dump(2);
  EXPECT_EQ(r["hooks"]["transform_caption"]["calls"].get<long>(), kThreads) << r.dump(2);
  ASSERT_TRUE(wait_until([&] { return counter(*runner, "on_epoch_start", "ok") >= 3; }, std::chrono::seconds(10),
                         [&] { runner->call("on_epoch_start", epoch_kwargs()); }));
  EXPECT_EQ(plugin_report(*runner)["restarts"].get<long>(), 1) << plugin_report(*runner).dump(2);
}

// A host that dies serving a call while notifies sent before it are still unread (their replies
// on the way, or still in the dying host's send queue, where they die with it) is blamed on the
// call, never on a notify: every round, the abort names on_epoch_start, no on_step_end counts a
// crash, and each on_step_end is answered or lost.
// The C++ and the Python SDK both say which request they serve (BULKHEAD_SERVING).
TEST(Restart, ACrashIsBlamedOnTheRequestTheHostWasServing) {
  constexpr int kNotifies = 40;
  for (const auto& [plugin, rounds] : {std::pair{"fault", 25}, std::pair{"fault-python", 8}})
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE(plugin);
    auto s = settings(plugin, {{"fault", "exit3"}, {"hooks", {"on_epoch_start"}}});
    s.abort_on_failure = true;
    auto runner = make_runner(s);
    for (int step = 0; step < kNotifies; ++step) runner->notify("on_step_end", step_kwargs(step));
    runner->call("on_epoch_start", epoch_kwargs());
    ASSERT_TRUE(runner->abort_reason().has_value()) << "round " << round;
    EXPECT_NE(runner->abort_reason()->find("on_epoch_start crashed"), std::string::npos)
        << "round " << round << ": " << *runner->abort_reason();
    const Json r = plugin_report(*runner);
    EXPECT_EQ(counter(*runner, "on_epoch_start", "crashes"), 1) << "round " << round << ": " << r.dump(2);
    EXPECT_EQ(counter(*runner, "on_step_end", "crashes"), 0) << "round " << round << ": " << r.dump(2);
    EXPECT_EQ(counter(*runner, "on_step_end", "ok") + counter(*runner, "on_step_end", "lost"), kNotifies)
        << "round " << round << ": " << r.dump(2);
  }
}

// The reason is for the console and the run report: one line; the traceback stays in train.log.
TEST(Quarantine, ReasonIsOneLineWithoutTheTraceback) {
  LogCapture capture("plugins");
  auto s = settings("fault-python", {{"fault", "throw"}});
  s.max_restarts = 1;
  auto runner = make_runner(s);
  ASSERT_TRUE(wait_until([&] { return plugin_report(*runner)["quarantined"].get<bool>(); }, std::chrono::seconds(10),
                         [&] { runner->transform_caption("a cat"); }));
  const std::string reason = plugin_report(*runner)["quarantine_reason"].get<std::string>();
  EXPECT_NE(reason.find("2 faults within"), std::string::npos) << reason;
  EXPECT_EQ(reason.find('\n'), std::string::npos) << reason;
  EXPECT_EQ(reason.find("Traceback"), std::string::npos) << reason;
  EXPECT_NE(capture.sink->text().find("Traceback"), std::string::npos) << "the traceback is still logged";
}

// More than max_restarts faults within the window: quarantined, loudly, once; then left alone.
TEST(Quarantine, AfterTooManyFaultsInWindow) {
  LogCapture capture("plugins");
  auto s = settings("fault", {{"fault", "exit3"}});
  s.max_restarts = 2;
  s.restart_window_s = 60;
  auto runner = make_runner(s);
  ASSERT_TRUE(wait_until([&] { return plugin_report(*runner)["quarantined"].get<bool>(); }, std::chrono::seconds(10),
                         [&] { EXPECT_EQ(runner->transform_caption("a cat"), "a cat"); }));
  const Json r = plugin_report(*runner);
  EXPECT_EQ(r["hooks"]["transform_caption"]["crashes"].get<long>(), 3) << r.dump(2);
  EXPECT_EQ(r["restarts"].get<long>(), 2) << r.dump(2);
  EXPECT_NE(r["quarantine_reason"].get<std::string>().find("3 faults within 60 s"), std::string::npos) << r.dump(2);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(runner->transform_caption("a dog"), "a dog");
  runner->call("on_epoch_start", epoch_kwargs());
  EXPECT_EQ(plugin_report(*runner)["hooks"]["transform_caption"]["calls"].get<long>(), 3);
  EXPECT_EQ(capture.sink->count("PLUGIN QUARANTINED"), 1) << capture.sink->text();
  EXPECT_NE(runner->report_table().find("QUARANTINED"), std::string::npos);
  EXPECT_TRUE(wait_until([] { return children().empty(); }));
}

TEST(Quarantine, FaultsSpreadOverTheWindowAreForgiven) {
  auto s = settings("fault", {{"fault", "throw"}, {"every", 1}});
  s.max_restarts = 2;
  s.restart_window_s = 0.3;
  auto runner = make_runner(s);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(runner->transform_caption("a cat"), "a cat");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_FALSE(plugin_report(*runner)["quarantined"].get<bool>()) << plugin_report(*runner).dump(2);
  EXPECT_EQ(counter(*runner, "transform_caption", "errors"), 6);
}

// No zombies while it runs; nothing left in the hosts' process groups once the runner is gone.
TEST(Hygiene, NoHostOutlivesTheRunner) {
  std::vector<int> groups;
  {
    auto s = settings("fault", {{"fault", "segfault"}, {"every", 2}});
    auto runner = make_runner(s);
    for (int i = 0; i < 10; ++i) {
      runner->transform_caption("a cat");
      for (const auto& child : children()) groups.push_back(child.pgid);
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
    EXPECT_GE(plugin_report(*runner)["restarts"].get<long>(), 1);
    EXPECT_EQ(zombies(), 0);
  }
  EXPECT_FALSE(groups.empty());
  EXPECT_EQ(children().size(), 0u);
  // SIGKILL is sent when the runner ends; the kernel may take a moment more to finish a process off.
  EXPECT_TRUE(wait_until([&] { return alive_in_groups(groups) == 0; }, std::chrono::seconds(2))) << describe_alive_in_groups(groups);
}

TEST(Hygiene, HangingHostIsKilledAtShutdown) {
  std::vector<int> groups;
  const auto started = std::chrono::steady_clock::now();
  {
    auto s = settings(raw_mode("once-exit-load"));  // a python host
    s.entry = "raw-fault";
    s.options = {{"fault", "hang"}};
    s.timeout_ms = 100;
    auto runner = make_runner(s);
    for (const auto& child : children()) groups.push_back(child.pgid);
    runner->notify("on_step_end", step_kwargs());  // it hangs in there; shutdown must still end it
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(8));
  EXPECT_EQ(children().size(), 0u);
  // Killed: a process the kernel is still tearing down (state R, no memory left) is given a moment.
  EXPECT_TRUE(wait_until([&] { return alive_in_groups(groups) == 0; }, std::chrono::seconds(2))) << describe_alive_in_groups(groups);
}

// 200 restarts leave the trainer's open files and threads where they were.
TEST(Hygiene, TwoHundredRestartsLeakNothing) {
  auto s = settings("fault", {{"fault", "exit0"}, {"hooks", {"transform_caption"}}});
  s.restart_backoff_ms = 0;
  s.max_restarts = 100000;
  auto runner = make_runner(s);
  // warm up: the first restart creates whatever lives for the whole process (ZeroMQ's context, loggers)
  runner->transform_caption("a cat");
  ASSERT_TRUE(wait_until([&] { return plugin_report(*runner)["restarts"].get<long>() >= 1; }, std::chrono::seconds(10),
                         [&] { runner->call("on_epoch_start", epoch_kwargs()); }));
  const std::size_t fds_before = open_fds(), threads_before = threads(), memory_before = memory_kib("VmRSS");
  long restarts = 0;
  for (int i = 0; i < 200; ++i) {
    const long before = plugin_report(*runner)["restarts"].get<long>();
    runner->transform_caption("a cat");  // the host exits
    ASSERT_TRUE(wait_until([&] { return plugin_report(*runner)["restarts"].get<long>() > before; },
                           std::chrono::seconds(10), [&] { runner->call("on_epoch_start", epoch_kwargs()); }))
        << "restart " << i;
    restarts = plugin_report(*runner)["restarts"].get<long>();
  }
  EXPECT_GE(restarts, 201);
  EXPECT_EQ(zombies(), 0);
  EXPECT_LE(children().size(), 1u);
  EXPECT_LE(open_fds(), fds_before + 2) << "fds " << fds_before << " -> " << open_fds();
  EXPECT_LE(threads(), threads_before + 1) << "threads " << threads_before << " -> " << threads();
  EXPECT_LE(memory_kib("VmRSS"), memory_before + 8 * 1024) << "resident KiB " << memory_before << " -> " << memory_kib("VmRSS");
}

// A host killed from outside (OOM killer, an operator) is noticed and restarted.
TEST(Restart, HostKilledFromOutsideIsRestarted) {
  auto runner = make_runner(settings("fault"));
  EXPECT_EQ(runner->transform_caption("a cat"), "a cat");
  auto kids = children();
  ASSERT_EQ(kids.size(), 1u);
  ASSERT_EQ(::kill(kids[0].pid, SIGKILL), 0);
  // dead (a zombie until the runner reaps it) before the next call
  ASSERT_TRUE(wait_until([&] {
    for (const auto& child : children())
      if (child.pid == kids[0].pid) return child.state == 'Z';
    return true;
  }));
  ASSERT_TRUE(wait_until([&] { return plugin_report(*runner)["restarts"].get<long>() == 1; }, std::chrono::seconds(10),
                         [&] { runner->transform_caption("a cat"); }))
      << plugin_report(*runner).dump(2);
  EXPECT_TRUE(wait_until([&] { return counter(*runner, "transform_caption", "ok") >= 2; }, std::chrono::seconds(5),
                         [&] { runner->transform_caption("a cat"); }));
  const Json r = plugin_report(*runner);
  // Normally noticed between calls ("(idle)"); under load the next call may see it first.
  EXPECT_EQ(counter(*runner, "(idle)", "crashes") + counter(*runner, "transform_caption", "crashes"), 1) << r.dump(2);
  const std::string where = r["hooks"].contains("(idle)") ? "(idle)" : "transform_caption";
  EXPECT_NE(r["hooks"][where]["last_fault"].get<std::string>().find("signal 9"), std::string::npos) << r.dump(2);
  auto now = children();
  ASSERT_EQ(now.size(), 1u);
  EXPECT_NE(now[0].pid, kids[0].pid);
}

// A host restarted from a thread that then ends keeps running (PR_SET_PDEATHSIG follows the
// forking thread, so hosts are forked from one long-lived launcher thread).
TEST(Restart, HostRestartedFromShortLivedThreadSurvivesIt) {
  auto runner = make_runner(settings("fault", {{"fault", "exit0"}, {"hooks", {"transform_caption"}}}));
  std::thread([&] { runner->transform_caption("a cat"); }).join();
  std::thread([&] {
    wait_until([&] { return plugin_report(*runner)["restarts"].get<long>() == 1; }, std::chrono::seconds(5),
               [&] { runner->call("on_epoch_start", epoch_kwargs()); });
  }).join();
  ASSERT_EQ(plugin_report(*runner)["restarts"].get<long>(), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int i = 0; i < 3; ++i) runner->call("on_epoch_start", epoch_kwargs());
  const Json r = plugin_report(*runner);
  EXPECT_EQ(r["restarts"].get<long>(), 1) << r.dump(2);
  EXPECT_FALSE(r["hooks"].contains("(idle)")) << r.dump(2);
}

// The host inherits stdin, stdout and stderr only, never the trainer's other descriptors.
TEST(Hygiene, HostInheritsNoTrainerDescriptors) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);  // deliberately not O_CLOEXEC
  char target[256] = {};
  ASSERT_GT(::readlink(("/proc/self/fd/" + std::to_string(fds[1])).c_str(), target, sizeof target - 1), 0);
  auto runner = make_runner(settings("fault"));
  auto kids = children();
  ASSERT_EQ(kids.size(), 1u);
  const std::string dir = "/proc/" + std::to_string(kids[0].pid) + "/fd";
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::error_code ignored;
    EXPECT_NE(fs::read_symlink(entry.path(), ignored).string(), std::string(target)) << entry.path();
  }
  ::close(fds[0]);
  ::close(fds[1]);
}

// Limits: memory past address_space_mb is a crash like any other (covered per hook in
// fault_modes_test); open files stop at open_files.
TEST(Limits, OpenFilesStopAtTheLimit) {
  auto s = settings("fault", {{"fault", "fds"}});
  s.limits.open_files = 64;
  auto runner = make_runner(s);
  EXPECT_EQ(runner->transform_caption("a cat"), "a cat");
  const Json r = plugin_report(*runner);
  const std::string fault = r["hooks"]["transform_caption"]["last_fault"];
  EXPECT_NE(fault.find("Too many open files"), std::string::npos) << fault;
  const long opened = std::stol(fault.substr(fault.find("opened ") + 7));
  EXPECT_GT(opened, 0);
  EXPECT_LT(opened, 64) << fault;
  // the host survives its own EMFILE and keeps serving
  runner->call("on_epoch_start", epoch_kwargs());
  EXPECT_EQ(counter(*runner, "on_epoch_start", "errors"), 1);  // fds on every hook: fails again, still alive
  EXPECT_EQ(plugin_report(*runner)["restarts"].get<long>(), 0);
}

TEST(Limits, MemoryHogIsAFault) {
  auto s = settings("fault", {{"fault", "hog"}});
  s.limits.address_space_mb = 512;
  s.timeout_ms = 10000;
  const auto started = std::chrono::steady_clock::now();
  auto runner = make_runner(s);
  EXPECT_EQ(runner->transform_caption("a cat"), "a cat");
  EXPECT_EQ(counter(*runner, "transform_caption", "crashes"), 1) << plugin_report(*runner).dump(2);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
}

TEST(Limits, CpuTimeIsAFault) {
  auto s = settings("fault", {{"fault", "spin"}, {"hooks", {"transform_caption"}}});
  s.limits.cpu_time_s = 1;
  s.timeout_ms = 10000;
  auto runner = make_runner(s);
  EXPECT_EQ(runner->transform_caption("a cat"), "a cat");
  const Json r = plugin_report(*runner);
  EXPECT_EQ(counter(*runner, "transform_caption", "crashes"), 1) << r.dump(2);
  // Whichever limit notices first: the process's own RLIMIT_CPU ("CPU time limit exceeded") or the
  // cgroup's for the tree, which counts the host's start too ("CPU time limit of 1 s reached ...").
  EXPECT_NE(r["hooks"]["transform_caption"]["last_fault"].get<std::string>().find("CPU time limit"), std::string::npos)
      << r.dump(2);
}

// Floods on stdout and stderr are logged at a bounded rate, and neither the plugin nor the
// trainer waits for them; 64 MiB with no newline does not grow the trainer's memory.
TEST(Output, FloodsAreRateLimitedAndNeverBlock) {
  for (const char* mode : {"flood", "stderr_flood"}) {
    LogCapture capture("plugin:fault");
    auto s = settings("fault", {{"fault", mode}, {"hooks", {"transform_caption"}}});
    s.timeout_ms = 5000;
    auto runner = make_runner(s);
    EXPECT_EQ(runner->transform_caption("a cat"), "a cat");
    EXPECT_EQ(counter(*runner, "transform_caption", "ok"), 1) << mode << plugin_report(*runner).dump(2);
    runner.reset();  // the streams end: the relay reports what it dropped
    // 100 000 lines were written; the relay shows 200 a second and says how many it dropped.
    EXPECT_GE(capture.sink->count("more lines dropped"), 1) << mode;
    EXPECT_LT(capture.sink->count("flood line"), 2000) << mode;
  }
}

TEST(Output, ALineWithoutEndDoesNotGrowTheTrainer) {
  LogCapture capture("plugin:fault");
  auto s = settings("fault", {{"fault", "spew"}, {"hooks", {"transform_caption"}}});
  s.timeout_ms = 10000;
  auto runner = make_runner(s);
  const std::size_t before = memory_kib("VmHWM");  // the peak (ctest runs each test in its own process)
  EXPECT_EQ(runner->transform_caption("a cat"), "a cat");
  EXPECT_EQ(counter(*runner, "transform_caption", "ok"), 1) << plugin_report(*runner).dump(2);
  runner.reset();  // the host exits: the unfinished line is logged, cut short
  EXPECT_LT(memory_kib("VmHWM"), before + 16 * 1024) << "64 MiB without a newline reached the trainer's memory";
  EXPECT_EQ(capture.sink->count("xxxxxxxx…"), 1);
}

// A plugin whose manifest declares resizes_images may return another size; others may not.
TEST(Semantics, AResizingPluginMayChangeTheImageSize) {
  const fs::path dir = fs::temp_directory_path() / ("bulkhead-resizer-" + std::to_string(getpid()));
  fs::create_directories(dir);
  Json manifest = Json::parse(std::ifstream(plugins_dir() / "fault" / "plugin.json"));
  manifest["name"] = "resizer";
  manifest["entry"] = (paths::library_dir() / "libbulkhead_test_fault.so").string();
  manifest["resizes_images"] = true;
  std::ofstream(dir / "plugin.json") << manifest.dump();
  auto runner = make_runner(settings(dir.string(), {{"fault", "wrong_size"}, {"hooks", {"transform_pil_image"}}}));
  const Image out = runner->transform_pil_image(test_image(8, 8));
  EXPECT_EQ(out.width, 4);
  EXPECT_EQ(out.height, 8);
  EXPECT_EQ(counter(*runner, "transform_pil_image", "ok"), 1) << plugin_report(*runner).dump(2);
  fs::remove_all(dir);
}

// A reload (bulkhead plugins restart) lifts a quarantine: the user fixed the plugin.
TEST(Reload, LiftsQuarantineAndStartsAfresh) {
  auto s = settings("fault", {{"fault", "throw"}, {"hooks", {"transform_caption"}}});
  s.max_restarts = 1;
  auto runner = make_runner(s);
  runner->transform_caption("a cat");
  runner->transform_caption("a cat");
  ASSERT_TRUE(plugin_report(*runner)["quarantined"].get<bool>()) << plugin_report(*runner).dump(2);
  runner->transform_caption("a cat");
  EXPECT_EQ(counter(*runner, "transform_caption", "calls"), 2);

  EXPECT_FALSE(runner->reload("no-such-plugin"));
  ASSERT_TRUE(runner->reload("fault"));
  EXPECT_FALSE(plugin_report(*runner)["quarantined"].get<bool>());
  EXPECT_TRUE(wait_until([&] { return counter(*runner, "transform_caption", "calls") == 3; }, std::chrono::seconds(10),
                         [&] { runner->transform_caption("a cat"); }))
      << plugin_report(*runner).dump(2);
  EXPECT_EQ(plugin_report(*runner)["reloads"].get<long>(), 1);
}

}  // namespace
}  // namespace bulkhead::test
