// The supervision invariants of the issue, each kept through real (tiny) training runs with real
// bulkhead-plugin-host processes running the C++ fault plugin (tests/plugins/fault):
//   1. under on_failure "skip" training completes whatever the plugin does, and the report counts it;
//   2. under on_failure "abort" training stops with an "errored" checkpoint that loads and resumes,
//      and the error names the plugin and the fault;
//   3. an identity plugin that crashes every k-th call changes no loss and no weight;
//   4. every sample is trained on once per epoch, transformed or original;
//   5. no process the trainer started outlives it, after a normal exit or Ctrl-C;
//   6. the end-of-run table tells a user which plugin crashed, how often, and how often it restarted.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "common/paths.hpp"
#include "support/proc.hpp"
#include "test_support.hpp"
#include "train/dataset.hpp"

namespace bulkhead::testing {
namespace {

using namespace std::chrono_literals;

// ---- plugins and reports ----------------------------------------------------------------------

fs::path fault_plugin() { return test_plugin("fault"); }

// A fault plugin entry that tolerates many faults (never quarantined in a tiny run).
Json fault_entry(const std::string& fault, const std::vector<std::string>& hooks, int every,
                 const std::string& on_failure = "skip") {
  return {{"name", fault_plugin().string()},
          {"options", {{"fault", fault}, {"hooks", hooks}, {"every", every}}},
          {"on_failure", on_failure},
          {"timeout_ms", 300},
          {"max_restarts", 1000},
          {"restart_backoff_ms", 10}};
}

long faults(const Json& plugin, const std::string& hook) {
  long total = 0;
  for (const char* name : {"errors", "timeouts", "crashes", "invalid_replies"}) total += hook_counter(plugin, hook, name);
  return total;
}

// The training set of a config, loaded and split as the trainer does, independently of it.
std::vector<std::string> training_captions(const Json& user) {
  const TrainConfig c = resolve_config(user, "test");
  auto split = split_validation(load_dataset(c.data_root, {c.resolution, c.num_workers}), c.validation_split, c.seed);
  std::vector<std::string> captions;
  for (const auto& example : split.first.examples) captions.push_back(example.caption);
  return captions;
}

long steps_per_epoch(const Json& user) {
  const long n = static_cast<long>(training_captions(user).size());
  const long batch = user["batch_size"].get<long>();
  return (n + batch - 1) / batch;
}

// ---- processes --------------------------------------------------------------------------------

bool running(const ProcStat& p) {
  auto now = read_proc_stat(p.pid);
  return now && now->start == p.start && now->state != 'Z';
}

// Children of this process (the in-process trainer's hosts), zombies included.
std::vector<ProcStat> my_children() {
  std::vector<ProcStat> out;
  for (const auto& p : all_proc_stats())
    if (p.ppid == getpid()) out.push_back(p);
  return out;
}

// Waits up to 2 s for every child of this test process to be gone and reaped.
::testing::AssertionResult no_child_left() {
  std::vector<ProcStat> left;
  for (int i = 0; i < 200; ++i) {
    left = my_children();
    if (left.empty()) return ::testing::AssertionSuccess();
    std::this_thread::sleep_for(10ms);
  }
  auto failure = ::testing::AssertionFailure() << left.size() << " process(es) the trainer started remain:";
  for (const auto& p : left) failure << " " << p.pid << " (" << p.comm << ", state " << p.state << ")";
  return failure;
}

// Every process a trainer started, seen by scanning /proc while it runs: its children, and whatever
// runs in their process groups (each host leads its own).
struct ProcessWatch {
  pid_t trainer = 0;
  std::map<std::pair<pid_t, unsigned long long>, ProcStat> seen;

  void scan() {
    std::set<pid_t> groups;
    for (const auto& [key, p] : seen) groups.insert(p.pgid);
    const auto procs = all_proc_stats();
    for (const auto& p : procs)
      if (p.ppid == trainer && p.state != 'Z') {
        seen[{p.pid, p.start}] = p;
        if (p.pgid == p.pid) groups.insert(p.pgid);
      }
    for (const auto& p : procs)
      if (p.pid != trainer && p.state != 'Z' && groups.count(p.pgid) && p.pgid != getpgrp()) seen[{p.pid, p.start}] = p;
  }
  int hosts(bool running_now = false) const {
    int n = 0;
    for (const auto& [key, p] : seen) n += p.comm.rfind("bulkhead-plugin", 0) == 0 && (!running_now || running(p));
    return n;
  }
  std::vector<ProcStat> still_running(std::chrono::milliseconds grace = 1000ms) const {
    std::vector<ProcStat> left;
    for (auto until = std::chrono::steady_clock::now() + grace;;) {
      left.clear();
      for (const auto& [key, p] : seen)
        if (running(p)) left.push_back(p);
      if (left.empty() || std::chrono::steady_clock::now() > until) return left;
      std::this_thread::sleep_for(10ms);
    }
  }
  ~ProcessWatch() {  // a failed test leaves nothing behind
    for (const auto& [key, p] : seen)
      if (running(p)) kill(p.pid, SIGKILL);
  }
};

std::string describe(const std::vector<ProcStat>& procs) {
  std::string text;
  for (const auto& p : procs) text += " " + std::to_string(p.pid) + " (" + p.comm + ")";
  return text;
}


// Scans every few ms until the trainer exits (or `limit`, then kills it); `poke` runs each round.
// Returns the wait status, or -1 when it had to be killed.
int watch_until_exit(ProcessWatch& watch, std::chrono::seconds limit, const std::function<void()>& poke = {}) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    watch.scan();
    int status = 0;
    if (waitpid(watch.trainer, &status, WNOHANG) == watch.trainer) return status;
    if (std::chrono::steady_clock::now() > until) {
      kill(watch.trainer, SIGKILL);
      waitpid(watch.trainer, &status, 0);
      return -1;
    }
    if (poke) poke();
    std::this_thread::sleep_for(3ms);
  }
}

// ---- 1. faulty plugins under "skip" -----------------------------------------------------------

enum class Expect { crashes, errors, timeouts, invalid_replies, nothing };

const char* counter_name(Expect e) {
  switch (e) {
    case Expect::crashes: return "crashes";
    case Expect::errors: return "errors";
    case Expect::timeouts: return "timeouts";
    case Expect::invalid_replies: return "invalid_replies";
    default: return "none";
  }
}

struct SkipCase {
  std::string fault, hook;
  int every;
  Expect expect;
  bool restarts;          // the host is killed and started again
  std::string last_fault; // what the report says happened
  int timeout_ms = 300;   // higher where a spurious timeout (a loaded machine) would spoil an exact count
  Json options = Json::object();
  Json limits = Json::object();
};

void PrintTo(const SkipCase& c, std::ostream* out) { *out << c.fault << " in " << c.hook << " every " << c.every; }

class SkipFault : public ::testing::TestWithParam<SkipCase> {};

TEST_P(SkipFault, TrainingCompletesAndTheReportCountsTheFaults) {
  const SkipCase& c = GetParam();
  auto dir = scratch("run");
  Json config = tiny_config(dir, 1);
  Json entry = fault_entry(c.fault, {c.hook}, c.every);
  entry["timeout_ms"] = c.timeout_ms;
  entry["options"].update(c.options);
  if (!c.limits.empty()) entry["limits"] = c.limits;
  config["plugins"] = {entry};
  const long train_size = static_cast<long>(training_captions(config).size());
  const long steps = steps_per_epoch(config);

  const auto began = std::chrono::steady_clock::now();
  const RunSummary summary = train(config);
  const auto took = std::chrono::steady_clock::now() - began;

  EXPECT_EQ(summary.outcome, RunOutcome::completed);
  EXPECT_EQ(summary.global_step, steps);
  EXPECT_EQ(summary.last_checkpoint.filename().string().rfind("final-", 0), 0u) << summary.last_checkpoint;
  const auto records = read_metrics(dir);
  ASSERT_EQ(static_cast<long>(records.size()), steps) << "every step of the epoch trained, once";
  for (long i = 0; i < steps; ++i) EXPECT_EQ(records[i]["local_step"].get<long>(), i);
  EXPECT_LT(took, 20s) << "a faulty plugin held training up";

  ASSERT_TRUE(fs::exists(dir / "plugin-report.json"));
  const Json report = read_json(dir / "plugin-report.json")["plugins"][0];
  const std::string dump = report.dump(2);
  EXPECT_EQ(report["name"], "fault");
  EXPECT_FALSE(report["quarantined"].get<bool>()) << dump;
  // Every call of the hook was made or skipped (restart backoff), and every call made was concluded.
  // A transform's items go in batches (transform_captions, ...): each item is counted once, in a
  // batch answered or skipped, or on its own when its batch failed and was retried item by item;
  // a wrong item of an answered batch is a fault of the per-item hook.
  const bool transform = c.hook.rfind("transform_", 0) == 0;
  const std::string batched = transform ? c.hook + "s" : "";
  auto count = [&](const char* name) { return hook_counter(report, c.hook, name); };
  auto batch_count = [&](const char* name) { return transform ? hook_counter(report, batched, name) : 0; };
  const long expected_items = transform ? train_size : c.hook == "on_step_end" ? steps : 1;
  EXPECT_EQ(count("calls") + count("skipped") + batch_count("items") + batch_count("items_skipped"), expected_items)
      << dump;
  if (c.hook != "on_step_end") {  // a notify's last reply may still be on its way at shutdown
    // (lost: served, or queued, when the host died serving another call, which took the blame)
    EXPECT_EQ(count("ok") + faults(report, c.hook) + count("lost"), count("calls") + batch_count("items_failed")) << dump;
  }

  if (c.expect == Expect::nothing) {
    EXPECT_EQ(faults(report, c.hook) + (transform ? faults(report, batched) : 0), 0) << dump;
    EXPECT_GT(count("ok") + batch_count("ok"), 0) << dump;
  } else {
    EXPECT_GT(count(counter_name(c.expect)) + batch_count(counter_name(c.expect)), 0) << dump;
    // The report says what went wrong: in this hook's last_fault or, when the host died with other
    // calls in flight, in the hook whose call noticed first (see CrashAttribution below).
    bool named = false;
    for (const auto& [hook, counters] : report["hooks"].items())
      named |= counters["last_fault"].is_string() &&
               counters["last_fault"].get<std::string>().find(c.last_fault) != std::string::npos;
    EXPECT_TRUE(named) << "no last_fault says \"" << c.last_fault << "\"\n" << dump;
  }
  if (c.restarts)
    EXPECT_GT(report["restarts"].get<long>(), 0) << dump;
  else
    EXPECT_EQ(report["restarts"].get<long>(), 0) << dump;
  // Faults that keep the host and the batch: the plugin sees every item once, so the count is
  // exact. (A throw fails its whole batch, which is retried item by item: the plugin sees some
  // items twice, so its every-N count is not the trainer's.)
  if (c.fault == "wrong_size") {
    EXPECT_EQ(count("invalid_replies"), train_size / c.every) << dump;
  }

  EXPECT_TRUE(no_child_left());
}

std::vector<SkipCase> skip_cases() {
  const Json small_memory = {{"address_space_mb", 512}};
  const Json one_second = {{"sleep_ms", 1000}};
  std::vector<SkipCase> cases = {
      // transform hooks: 427 calls per epoch, from the loader's workers
      {"segfault", "transform_caption", 40, Expect::crashes, true, "signal 11"},
      {"abort", "transform_pil_image", 40, Expect::crashes, true, "signal 6"},
      {"exit0", "transform_caption", 40, Expect::crashes, true, "exit status 0"},
      {"exit3", "transform_pil_image", 40, Expect::crashes, true, "exit status 3"},
      {"throw", "transform_caption", 5, Expect::errors, false, "injected failure in transform_caption", 2000},
      {"hang", "transform_caption", 40, Expect::timeouts, true, "missed its deadline of 300 ms"},
      {"sleep", "transform_pil_image", 40, Expect::timeouts, true, "missed its deadline of 300 ms", 300, one_second},
      {"flood", "transform_caption", 100, Expect::nothing, false, "", 5000},
      {"hog", "transform_pil_image", 100, Expect::crashes, true, "crashed", 5000, Json::object(), small_memory},
      {"wrong_size", "transform_pil_image", 3, Expect::invalid_replies, false, "the image came back", 2000},
      // observers: on_step_end (notify, 14 per epoch) and on_epoch_start (call, once)
      {"segfault", "on_step_end", 3, Expect::crashes, true, "signal 11"},
      {"abort", "on_step_end", 3, Expect::crashes, true, "signal 6"},
      {"exit0", "on_step_end", 3, Expect::crashes, true, "exit status 0"},
      {"exit3", "on_step_end", 3, Expect::crashes, true, "exit status 3"},
      {"throw", "on_step_end", 3, Expect::errors, false, "injected failure in on_step_end", 2000},
      {"hang", "on_step_end", 3, Expect::timeouts, true, "missed its deadline of 300 ms"},
      {"sleep", "on_step_end", 3, Expect::timeouts, true, "missed its deadline of 300 ms", 300, one_second},
      {"flood", "on_step_end", 5, Expect::nothing, false, "", 5000},
      {"hog", "on_step_end", 5, Expect::crashes, true, "crashed", 5000, Json::object(), small_memory},
      {"segfault", "on_epoch_start", 1, Expect::crashes, true, "signal 11"},
      {"hang", "on_epoch_start", 1, Expect::timeouts, true, "missed its deadline of 300 ms"},
  };
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Faults, SkipFault, ::testing::ValuesIn(skip_cases()),
                         [](const ::testing::TestParamInfo<SkipCase>& info) {
                           return info.param.fault + "_in_" + info.param.hook;
                         });

// ---- 2. "abort" -------------------------------------------------------------------------------

struct AbortCase {
  std::string fault, hook;
  int every;
  std::string detail;  // how the fault is named in the error
};

void PrintTo(const AbortCase& c, std::ostream* out) { *out << c.fault << " in " << c.hook << " every " << c.every; }

class AbortFault : public ::testing::TestWithParam<AbortCase> {};

// Training stops with TrainingAborted naming the plugin, the hook and the fault; the one
// checkpoint is "errored", holds exactly the steps trained, loads, and training resumes from it.
TEST_P(AbortFault, StopsWithAnErroredCheckpointThatResumes) {
  const AbortCase& c = GetParam();
  auto dir = scratch("run");
  Json config = tiny_config(dir, 2);
  config["plugins"] = {fault_entry(c.fault, {c.hook}, c.every, "abort")};
  const long total_steps = 2 * steps_per_epoch(config);

  std::string what;
  try {
    train(config);
    ADD_FAILURE() << "training went on to the end";
  } catch (const TrainingAborted& e) {
    what = e.what();
  }
  EXPECT_NE(what.find("plugin 'fault' (on_failure: abort)"), std::string::npos) << what;
  EXPECT_NE(what.find(c.detail), std::string::npos) << what;
  // The hook is named too. A crash fails every call in flight, each under its own hook, and the
  // first to conclude names the fault: the loader's other transform may be the one named.
  const bool transform = c.hook.rfind("transform_", 0) == 0;
  EXPECT_TRUE(what.find(c.hook) != std::string::npos || (transform && what.find(": transform_") != std::string::npos))
      << what;
  EXPECT_EQ(what.find("(idle)"), std::string::npos) << what;
  EXPECT_TRUE(no_child_left());

  std::vector<fs::path> checkpoints;
  for (const auto& file : fs::directory_iterator(dir / "checkpoints"))
    if (file.path().filename() != "latest.txt") checkpoints.push_back(file.path());
  ASSERT_EQ(checkpoints.size(), 1u) << "one checkpoint, no partial or final one";
  const fs::path errored = checkpoints[0];
  EXPECT_EQ(errored.filename().string().rfind("errored-", 0), 0u) << errored;
  EXPECT_EQ(resolve_checkpoint_path(dir), errored) << "latest.txt names the errored checkpoint";
  const long trained = static_cast<long>(read_metrics(dir).size());
  EXPECT_LT(trained, total_steps) << "stopped before the end";
  {
    Checkpoint checkpoint(errored);
    EXPECT_EQ(checkpoint.info().reason, "errored");
    EXPECT_EQ(checkpoint.info().position.global_step, trained) << "the checkpoint holds every step trained";
    for (const auto& p : checkpoint.make_model()->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
  }
  const Json report = read_json(dir / "plugin-report.json")["plugins"][0];
  EXPECT_GT(faults(report, c.hook), 0) << report.dump(2);
  EXPECT_NE(read_text(dir / "train.log").find("training failed: plugin failure: plugin 'fault'"), std::string::npos);

  // Resumed without the plugin, in the same run folder, it trains the remaining steps.
  Json resumed = tiny_config(dir, 2);
  const RunSummary summary = train(resumed, errored);
  EXPECT_EQ(summary.outcome, RunOutcome::completed);
  EXPECT_EQ(summary.global_step, total_steps);
  EXPECT_EQ(static_cast<long>(read_metrics(dir).size()), total_steps);
}

INSTANTIATE_TEST_SUITE_P(
    Faults, AbortFault,
    ::testing::Values(AbortCase{"segfault", "transform_caption", 3, "killed by signal 11"},
                      AbortCase{"throw", "on_step_end", 3, "injected failure in on_step_end"},
                      // the second epoch's start: between epochs, after a whole one
                      AbortCase{"exit3", "on_epoch_start", 2, "exit status 3"}),
    [](const ::testing::TestParamInfo<AbortCase>& info) { return info.param.fault + "_in_" + info.param.hook; });

// ---- 3. an identity plugin that crashes changes nothing ---------------------------------------

TEST(CrashingIdentity, SameLossesAndWeightsAsWithoutPlugin) {
  auto plain_dir = scratch("plain");
  const RunSummary plain = train(tiny_config(plain_dir, 2));

  auto faulty_dir = scratch("faulty");
  Json config = tiny_config(faulty_dir, 2);
  config["plugins"] = {fault_entry("segfault", {"transform_caption", "transform_pil_image"}, 40)};
  const RunSummary faulty = train(config);
  EXPECT_TRUE(no_child_left());

  // Not vacuous: the plugin was called in both hooks, and crashed.
  const Json report = read_json(faulty_dir / "plugin-report.json")["plugins"][0];
  const Json& hooks = report["hooks"];
  EXPECT_GT(hook_counter(report, "transform_caption", "crashes") + hook_counter(report, "transform_pil_image", "crashes"), 0)
      << report.dump(2);
  EXPECT_GT(report["restarts"].get<long>(), 0) << report.dump(2);
  for (const std::string hook : {"transform_caption", "transform_pil_image"})
    EXPECT_GT(hook_counter(report, hook, "ok") + hook_counter(report, hook + "s", "items"), 0) << report.dump(2);
  ASSERT_TRUE(hooks.contains("transform_pil_image"));

  const auto a = read_metrics(plain_dir), b = read_metrics(faulty_dir);
  ASSERT_EQ(a.size(), 2u * steps_per_epoch(config));
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i;
  const auto va = read_metrics(plain_dir, "val_loss"), vb = read_metrics(faulty_dir, "val_loss");
  ASSERT_EQ(va.size(), vb.size());
  for (std::size_t i = 0; i < va.size(); ++i) EXPECT_EQ(va[i]["val_loss"].get<double>(), vb[i]["val_loss"].get<double>());
  EXPECT_TRUE(same_weights(plain.last_checkpoint, faulty.last_checkpoint));
}

// ---- 4. every sample once per epoch, transformed or original ----------------------------------

// The plugin appends a suffix to every caption it returns and crashes every 9th transform_caption:
// each epoch's batches hold every training caption exactly once, with the suffix when the plugin
// answered and without it when the call failed or was skipped while the host restarted.
TEST(EverySample, TrainedOncePerEpochTransformedOrOriginal) {
  const std::string suffix = " zzplugin";
  auto dir = scratch("run");
  Json config = tiny_config(dir, 2);
  Json entry = fault_entry("segfault", {"transform_caption"}, 9);
  entry["options"]["caption_suffix"] = suffix;
  config["plugins"] = {entry};
  std::vector<std::string> expected = training_captions(config);
  std::sort(expected.begin(), expected.end());

  std::map<int, std::vector<std::string>> by_epoch;
  train(config, std::nullopt, [&](const std::string& hook, const Json& kwargs) {
    if (hook == "on_step_end")
      for (const auto& caption : kwargs["batch"]["captions"]) by_epoch[kwargs["epoch"].get<int>()].push_back(caption);
    return std::vector<Json>{};
  });
  EXPECT_TRUE(no_child_left());

  long transformed = 0, original = 0;
  ASSERT_EQ(by_epoch.size(), 2u);
  for (auto& [epoch, captions] : by_epoch) {
    for (auto& caption : captions)
      if (caption.size() > suffix.size() && caption.compare(caption.size() - suffix.size(), suffix.size(), suffix) == 0) {
        caption.resize(caption.size() - suffix.size());
        ++transformed;
      } else {
        ++original;
      }
    std::sort(captions.begin(), captions.end());
    EXPECT_EQ(captions.size(), expected.size()) << "epoch " << epoch;
    EXPECT_TRUE(captions == expected) << "epoch " << epoch << " did not train on each sample exactly once";
  }
  const Json report = read_json(dir / "plugin-report.json")["plugins"][0];
  // Each caption went in an answered batch, a skipped one, or on its own after its batch failed.
  const long ok = hook_counter(report, "transform_caption", "ok") + hook_counter(report, "transform_captions", "items") -
                  hook_counter(report, "transform_captions", "items_failed");
  EXPECT_EQ(transformed, ok) << "every answer the plugin gave was trained on\n" << report.dump(2);
  EXPECT_EQ(hook_counter(report, "transform_caption", "calls") + hook_counter(report, "transform_caption", "skipped") +
                hook_counter(report, "transform_captions", "items") + hook_counter(report, "transform_captions", "items_skipped"),
            2 * static_cast<long>(expected.size()))
      << report.dump(2);
  EXPECT_GT(hook_counter(report, "transform_caption", "crashes") + hook_counter(report, "transform_captions", "crashes"), 0)
      << report.dump(2);
  EXPECT_GT(transformed, 0);
  EXPECT_GT(original, 0) << "no call failed: the test proves nothing";
}

// ---- 5 and 6: the real program ----------------------------------------------------------------

// Two plugins, each in its own host: one that crashes now and then, one that never does.
Json program_config(const fs::path& run_dir, int max_epochs, int every) {
  Json config = tiny_config(run_dir, max_epochs);
  config["plugins"] = {fault_entry("segfault", {"transform_caption"}, every),
                       test_plugin("recorder").string()};
  return config;
}

TEST(ProgramWithFaultyPlugin, NormalExitLeavesNoPluginProcess) {
  auto dir = scratch("cmd");
  std::ofstream(dir / "train.json") << program_config(dir / "run", 1, 40).dump();
  ProcessWatch watch;
  watch.trainer = start_trainer(dir / "train.json", dir / "output.txt");
  ASSERT_GT(watch.trainer, 0);
  const int status = watch_until_exit(watch, 60s);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_text(dir / "output.txt");
  const Json report = read_json(dir / "run" / "plugin-report.json");
  ASSERT_TRUE(report.is_object());
  EXPECT_GT(report["plugins"][0]["restarts"].get<long>(), 0) << report.dump(2);
  EXPECT_GE(watch.hosts(), 3) << "both hosts and at least one restarted one are watched";
  const auto left = watch.still_running();
  EXPECT_TRUE(left.empty()) << "outlived the trainer:" << describe(left);
}

TEST(ProgramWithFaultyPlugin, CtrlCLeavesNoPluginProcess) {
  auto dir = scratch("cmd");
  std::ofstream(dir / "train.json") << program_config(dir / "run", 200, 20).dump();
  ProcessWatch watch;
  watch.trainer = start_trainer(dir / "train.json", dir / "output.txt");
  ASSERT_GT(watch.trainer, 0);
  bool sent = false;
  const int status = watch_until_exit(watch, 60s, [&] {
    if (!sent && read_metrics(dir / "run").size() >= 20 && watch.hosts() >= 3 && watch.hosts(true) >= 1) {
      kill(watch.trainer, SIGINT);
      sent = true;
    }
  });
  ASSERT_TRUE(sent) << read_text(dir / "output.txt");
  ASSERT_TRUE(WIFEXITED(status)) << "not a clean exit: " << status << "\n" << read_text(dir / "output.txt");
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_GE(watch.hosts(), 2);
  const auto left = watch.still_running();
  EXPECT_TRUE(left.empty()) << "outlived the trainer:" << describe(left);
  EXPECT_EQ(resolve_checkpoint_path(dir / "run").filename().string().rfind("interrupted-", 0), 0u);
  EXPECT_TRUE(fs::exists(dir / "run" / "plugin-report.json"));
}

// One row of the end-of-run table.
struct Row {
  long calls = 0, skipped = 0, timeouts = 0, crashes = 0, invalid = 0, errors = 0;
  long items = -1;  // a batched hook's; "-" for the others
};

// The table the trainer logs after "plugins:": rows by plugin and hook, restarts lines by plugin.
struct Table {
  std::map<std::pair<std::string, std::string>, Row> rows;
  std::map<std::string, std::string> restarts;  // "fault" -> "4 restarts" (and the quarantine, if any)
  bool header = false;
};

Table parse_table(const std::string& output) {
  Table table;
  const auto at = output.rfind("plugins:\n");
  if (at == std::string::npos) return table;
  std::istringstream lines(output.substr(at + 9));
  for (std::string line; std::getline(lines, line) && !line.empty();) {
    if (line.rfind("plugin ", 0) == 0) {
      table.header = line.find("hook") != std::string::npos && line.find("calls") != std::string::npos &&
                     line.find("crashes") != std::string::npos;
      continue;
    }
    if (line.rfind("  ", 0) == 0) {
      const auto colon = line.find(": ");
      if (colon != std::string::npos) table.restarts[line.substr(2, colon - 2)] = line.substr(colon + 2);
      continue;
    }
    if (line[0] == '[') break;  // the next log line
    std::istringstream fields(line);
    std::string plugin, hook, p50, p99, items;
    Row row;
    if (fields >> plugin >> hook >> row.calls >> row.skipped >> p50 >> p99 >> row.timeouts >> row.crashes >> row.invalid >>
        row.errors >> items) {
      if (items != "-") row.items = std::stol(items);
      table.rows[{plugin, hook}] = row;
    }
  }
  return table;
}

// What a user reads: a row per plugin and hook whose numbers are plugin-report.json's, and each
// plugin's restarts.
::testing::AssertionResult table_matches_report(const Table& table, const Json& report) {
  if (!table.header) return ::testing::AssertionFailure() << "no table header";
  std::size_t hooks = 0;
  for (const auto& plugin : report["plugins"]) {
    const std::string name = plugin["name"];
    for (const auto& [hook, c] : plugin["hooks"].items()) {
      ++hooks;
      auto row = table.rows.find({name, hook});
      if (row == table.rows.end()) return ::testing::AssertionFailure() << "no row for " << name << " " << hook;
      const Row& r = row->second;
      if (r.calls != c["calls"] || r.skipped != c["skipped"] || r.timeouts != c["timeouts"] || r.crashes != c["crashes"] ||
          r.invalid != c["invalid_replies"] || r.errors != c["errors"] || r.items != c.value("items", -1L))
        return ::testing::AssertionFailure() << "the row for " << name << " " << hook << " differs from " << c.dump();
    }
    const std::string restarts = std::to_string(plugin["restarts"].get<long>()) + " restarts";
    if (table.restarts.count(name) == 0 || table.restarts.at(name).rfind(restarts, 0) != 0)
      return ::testing::AssertionFailure() << "no \"" << name << ": " << restarts << "\" line";
  }
  if (table.rows.size() != hooks) return ::testing::AssertionFailure() << "rows that are not in the report";
  return ::testing::AssertionSuccess();
}

TEST(ProgramWithFaultyPlugin, EndOfRunTableShowsCrashesAndRestarts) {
  auto dir = scratch("cmd");
  std::ofstream(dir / "train.json") << program_config(dir / "run", 1, 40).dump();
  ProcessWatch watch;
  watch.trainer = start_trainer(dir / "train.json", dir / "output.txt");
  const int status = watch_until_exit(watch, 60s);
  const std::string output = read_text(dir / "output.txt");
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;

  Table table = parse_table(output);
  const Json report = read_json(dir / "run" / "plugin-report.json");
  EXPECT_TRUE(table_matches_report(table, report)) << output;
  // The crash fails its batch (transform_captions); its item, retried on its own, crashes again.
  ASSERT_TRUE(table.rows.count({"fault", "transform_captions"})) << output;
  EXPECT_GT(table.rows.at({"fault", "transform_captions"}).crashes, 0) << output;
  ASSERT_TRUE(table.rows.count({"fault", "transform_caption"})) << output;
  EXPECT_GT(table.rows.at({"fault", "transform_caption"}).crashes, 0) << output;
  EXPECT_EQ(table.restarts.count("fault"), 1u) << output;
  EXPECT_NE(table.restarts["fault"], "0 restarts") << output;
  EXPECT_EQ(table.restarts["recorder"], "0 restarts") << output;
  EXPECT_EQ(table.rows.at({"recorder", "transform_captions"}).crashes, 0) << output;
  EXPECT_GT(table.rows.at({"recorder", "transform_captions"}).items, 0) << output;
}

// A plugin that crashes on every call is quarantined: the table says so, and why.
TEST(ReportTable, NamesAQuarantinedPluginAndWhy) {
  auto dir = scratch("run");
  Json config = tiny_config(dir, 1);
  Json entry = fault_entry("segfault", {"transform_caption"}, 1);
  entry["max_restarts"] = 2;
  config["plugins"] = {entry};
  const RunSummary summary = train(config);
  EXPECT_EQ(summary.outcome, RunOutcome::completed);
  EXPECT_TRUE(no_child_left());

  const std::string log = read_text(dir / "train.log");
  const Json report = read_json(dir / "plugin-report.json");
  const Json& plugin = report["plugins"][0];
  ASSERT_TRUE(plugin["quarantined"].get<bool>()) << plugin.dump(2);
  Table table = parse_table(log);
  EXPECT_TRUE(table_matches_report(table, report)) << log;
  EXPECT_GE(table.rows.at({"fault", "transform_caption"}).crashes, 1) << log;
  EXPECT_EQ(table.restarts["fault"],
            std::to_string(plugin["restarts"].get<long>()) + " restarts, QUARANTINED: " +
                plugin["quarantine_reason"].get<std::string>())
      << log;
  EXPECT_NE(plugin["quarantine_reason"].get<std::string>().find("3 faults within 60 s"), std::string::npos)
      << plugin.dump(2);
  EXPECT_NE(plugin["quarantine_reason"].get<std::string>().find("signal 11"), std::string::npos) << plugin.dump(2);
  EXPECT_NE(log.find("PLUGIN QUARANTINED: 'fault'"), std::string::npos) << log;
}

// ---- a crash during a call belongs to that call's hook ------------------------------------------
// When the host dies during a call while another loader worker asks for it, the process is dead
// before any call has concluded. That is not a death "between calls": the call in flight reports
// it, with its hook, once; the other worker's call is skipped meanwhile.

TEST(CrashAttribution, ACrashDuringACallIsNotCountedAsBetweenCalls) {
  auto dir = scratch("run");
  Json config = tiny_config(dir, 1);
  Json entry = fault_entry("segfault", {"transform_caption"}, 1);
  entry["max_restarts"] = 2;
  config["plugins"] = {entry};
  train(config);
  const Json plugin = read_json(dir / "plugin-report.json")["plugins"][0];
  // Only transform_caption crashes the host: nothing died between calls.
  EXPECT_EQ(hook_counter(plugin, "(idle)", "crashes"), 0) << plugin.dump(2);
  EXPECT_TRUE(plugin["hooks"]["transform_caption"]["last_fault"].is_string()) << plugin.dump(2);
  // The last fault is a call that crashed with the host (any call in flight then fails with it).
  const std::string reason = plugin["quarantine_reason"].get<std::string>();
  EXPECT_NE(reason.find("crashed: killed by signal 11"), std::string::npos) << plugin.dump(2);
  EXPECT_EQ(reason.find("(idle)"), std::string::npos) << plugin.dump(2);
}

}  // namespace
}  // namespace bulkhead::testing
