// Plugins in real (tiny) training runs, beside plugin_faults_test.cpp (the C++ fault plugin's
// invariants): Python SDK faults under "skip", EveryDream2 plugin files, the Python interpreter
// setting, no process a plugin's own code started outliving `bulkhead train`, and restarting a
// fixed plugin mid-run.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <cstdio>
#include <sstream>
#include <thread>

#include "common/paths.hpp"
#include "support/proc.hpp"
#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

Json fault_entry(const std::string& plugin, const std::string& fault, const std::string& hook, int every,
                 const std::string& on_failure = "skip") {
  return {{"name", test_plugin(plugin).string()},
          {"options", {{"fault", fault}, {"hooks", {hook}}, {"every", every}}},
          {"on_failure", on_failure},
          {"timeout_ms", 300},
          {"restart_backoff_ms", 10}};
}



// A transform's faults land on its per-item hook, or on its batched one (transform_captions, ...)
// when a batch failed whole and was retried item by item (docs/protocol.md, section 3.7).
long hook_faults(const Json& plugin_report, const std::string& hook) {
  long faults = 0;
  for (const std::string& name : {hook, hook.rfind("transform_", 0) == 0 ? hook + "s" : std::string()})
    for (const char* counter : {"errors", "timeouts", "crashes", "invalid_replies"})
      if (!name.empty()) faults += hook_counter(plugin_report, name, counter);
  return faults;
}

struct SkipCase {
  std::string plugin, fault, hook;
  int every;
};

void PrintTo(const SkipCase& c, std::ostream* out) { *out << c.plugin << " " << c.fault << " in " << c.hook; }

class FaultyPluginUnderSkip : public ::testing::TestWithParam<SkipCase> {};

// Training finishes every step, and the report counts the faults.
TEST_P(FaultyPluginUnderSkip, TrainingCompletes) {
  const SkipCase& c = GetParam();
  auto dir = scratch("run");
  Json config = tiny_config(dir, 1);
  config["plugins"] = {fault_entry(c.plugin, c.fault, c.hook, c.every)};
  auto summary = train(config);
  EXPECT_EQ(summary.outcome, RunOutcome::completed);
  EXPECT_EQ(read_metrics(dir).size(), 14u) << "every step of the epoch was trained";
  EXPECT_TRUE(fs::exists(summary.last_checkpoint));
  const Json report = read_json(dir / "plugin-report.json")["plugins"][0];
  EXPECT_GT(hook_faults(report, c.hook), 0) << report.dump(2);
}

INSTANTIATE_TEST_SUITE_P(
    Faults, FaultyPluginUnderSkip,
    ::testing::Values(SkipCase{"fault-python", "segfault", "transform_caption", 60},
                      SkipCase{"fault-python", "throw", "on_step_end", 3},
                      SkipCase{"fault-python", "wrong_size", "transform_pil_image", 5},
                      SkipCase{"fault", "sleep", "on_step_start", 4}),
    [](const ::testing::TestParamInfo<SkipCase>& info) {
      std::string name = info.param.plugin + "_" + info.param.fault + "_" + info.param.hook;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

// An EveryDream2 plugin file, unmodified in style, in a plugins/ folder next to train.json:
// resolved by class path, its arg_update_callback('grad_accum', 2) changes the next epoch's
// grad_accum, and an unsupported argument raises inside the plugin while training goes on.
TEST(EveryDream2Plugin, RunsUnmodifiedInATrainingRun) {
  auto dir = scratch("project");
  fs::create_directories(dir / "plugins");
  std::ofstream(dir / "plugins" / "accum_plugin.py") << R"(from plugins.plugins import BasePlugin

class AccumPlugin(BasePlugin):
    def on_epoch_end(self, **kwargs):
        print(f"epoch {kwargs['epoch']} ended at step {kwargs['global_step']}")
        kwargs["arg_update_callback"]("grad_accum", 2)

    def on_epoch_start(self, **kwargs):
        kwargs["arg_update_callback"]("learning_rate_of_doom", 7)  # EveryDream2 raises here too
)";
  Json config = tiny_config(dir / "run", 2);
  config["plugins"] = {"plugins.accum_plugin.AccumPlugin"};
  std::ofstream(dir / "train.json") << config.dump();
  auto summary = train(read_config_file(dir / "train.json"), std::nullopt, {}, dir / "train.json");
  EXPECT_EQ(summary.outcome, RunOutcome::completed);
  const auto steps = read_metrics(dir / "run");
  ASSERT_EQ(steps.size(), 28u);
  EXPECT_EQ(steps.front()["grad_accum"], 1);
  EXPECT_EQ(steps.back()["grad_accum"], 2);
  const Json report = read_json(dir / "run" / "plugin-report.json")["plugins"][0];
  EXPECT_EQ(report["hooks"]["on_epoch_start"]["errors"].get<long>(), 2) << report.dump(2);
  EXPECT_NE(report["hooks"]["on_epoch_start"]["last_fault"].get<std::string>().find("Unrecognized arg: learning_rate_of_doom"),
            std::string::npos) << report.dump(2);
  EXPECT_EQ(report["hooks"]["on_epoch_end"]["ok"].get<long>(), 2) << report.dump(2);
  // Its print and its traceback reach train.log, tagged with its name.
  const std::string log = read_text(dir / "run" / "train.log");
  EXPECT_NE(log.find("[plugin:AccumPlugin] [info] epoch 0 ended at step 14"), std::string::npos) << log;
  EXPECT_NE(log.find("Traceback (most recent call last)"), std::string::npos) << log;
  EXPECT_NE(log.find("accum_plugin.py\", line"), std::string::npos) << log;
}

// A call hook goes to all its plugins at once (docs/protocol.md, section 3.3), yet their control
// requests apply in config order: the first plugin here answers on_epoch_end late with grad_accum 3,
// grad_accum_schedule (second) at once with 2; in turn, 2 is the last word, whichever came first.
TEST(EveryDream2Plugin, ControlRequestsOfOneCallApplyInConfigOrder) {
  auto dir = scratch("project");
  fs::create_directories(dir / "plugins");
  std::ofstream(dir / "plugins" / "slow_accum.py") << R"(import time
from plugins.plugins import BasePlugin

class SlowAccum(BasePlugin):
    def on_epoch_end(self, **kwargs):
        time.sleep(0.3)
        kwargs["arg_update_callback"]("grad_accum", 3)
)";
  Json config = tiny_config(dir / "run", 2);
  config["plugins"] = {"plugins.slow_accum.SlowAccum",
                       {{"name", "grad_accum_schedule"},
                        {"options", {{"begin_epoch", 0}, {"end_epoch", 1}, {"begin_grad_accum", 2}, {"end_grad_accum", 2}}}}};
  std::ofstream(dir / "train.json") << config.dump();
  auto summary = train(read_config_file(dir / "train.json"), std::nullopt, {}, dir / "train.json");
  EXPECT_EQ(summary.outcome, RunOutcome::completed);
  const auto steps = read_metrics(dir / "run");
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps.back()["grad_accum"], 2);
  const std::string log = read_text(dir / "run" / "train.log");
  EXPECT_LT(log.find("SlowAccum set grad_accum to 3"), log.find("grad_accum_schedule set grad_accum to 2")) << log;
}

// EveryDream2's plugins import colorama and torch (every EveryDream2 install has them): the
// default Python runtime has them too, and torch loads within the jail's default limits.
TEST(PythonPlugins, AnEveryDream2PluginImportingTorchAndColoramaRunsInItsJail) {
  auto dir = scratch("project");
  fs::create_directories(dir / "plugins");
  // Like EveryDream2's Accumulnator: a grad_accum schedule read from a JSON file beside the plugin.
  std::ofstream(dir / "plugins" / "torchy.json") << R"({"grad_accum": 3})";
  std::ofstream(dir / "plugins" / "torchy.py") << R"(import json
import os
import colorama
import torch
from plugins.plugins import BasePlugin

class Torchy(BasePlugin):
    def __init__(self):
        with open(os.path.join(os.path.dirname(__file__), "torchy.json")) as f:
            self.schedule = json.load(f)

    def on_epoch_end(self, **kwargs):
        print(colorama.Fore.GREEN + "torch says %g" % float(torch.ones(3).sum()) + colorama.Style.RESET_ALL)
        kwargs["arg_update_callback"]("grad_accum", self.schedule["grad_accum"])
)";
  Json config = tiny_config(dir / "run", 2);
  config["plugins"] = {"plugins.torchy.Torchy"};
  std::ofstream(dir / "train.json") << config.dump();
  EXPECT_EQ(train(read_config_file(dir / "train.json"), std::nullopt, {}, dir / "train.json").outcome, RunOutcome::completed);
  const Json report = read_json(dir / "run" / "plugin-report.json")["plugins"][0];
  EXPECT_EQ(report["hooks"]["on_epoch_end"]["ok"].get<long>(), 2) << report.dump(2);
  EXPECT_NE(read_text(dir / "run" / "train.log").find("torch says 3"), std::string::npos);
  EXPECT_EQ(read_metrics(dir / "run").back()["grad_accum"], 3) << "the schedule beside the plugin was read";
}

// train.json's "python" picks the interpreter of Python plugins (relative to the config's folder).
TEST(PythonPlugins, RunOnTheInterpreterTheConfigNames) {
  auto dir = scratch("project");
  // It says so on stderr (which train.log keeps): the jail lets it write nowhere beside itself.
  std::ofstream(dir / "my-python") << "#!/bin/sh\necho \"my-python runs $@\" >&2\nexec /usr/bin/python3 \"$@\"\n";
  fs::permissions(dir / "my-python", fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
  Json config = tiny_config(dir / "run", 1);
  config["python"] = "my-python";
  config["plugins"] = {"example_plugin"};
  std::ofstream(dir / "train.json") << config.dump();
  EXPECT_EQ(train(read_config_file(dir / "train.json"), std::nullopt, {}, dir / "train.json").outcome, RunOutcome::completed);
  EXPECT_NE(read_text(dir / "run" / "train.log").find("my-python runs -m bulkhead_plugin.host"), std::string::npos);
}

// EveryDream2's rolling-checkpoint pattern, unmodified: `from train import save_model`, save every
// few steps, remove the previous save, remove the last at the end. The trainer saves and deletes.
TEST(PythonPlugins, EveryDream2SaveModelKeepsOneRollingCheckpoint) {
  auto dir = scratch("project");
  fs::create_directories(dir / "plugins");
  std::ofstream(dir / "plugins" / "rolling.py") << R"(import os
import shutil
from plugins.plugins import BasePlugin
from train import save_model

class Rolling(BasePlugin):
    def __init__(self):
        self.previous = None

    def on_step_end(self, **kwargs):
        if kwargs["global_step"] % 3 != 2:
            return
        path = os.path.join(kwargs["log_folder"], "ckpts", "rolling-%s-gs%05d" % (kwargs["project_name"], kwargs["global_step"]))
        save_model(path, ed_state=kwargs["ed_state"], global_step=kwargs["global_step"], save_full_precision=True)
        if self.previous:
            shutil.rmtree(self.previous)
        self.previous = path

    def on_training_end(self, **kwargs):
        if self.previous:
            shutil.rmtree(self.previous)
)";
  Json config = tiny_config(dir / "run", 2);
  config["plugins"] = {"plugins.rolling.Rolling"};
  std::ofstream(dir / "train.json") << config.dump();
  std::vector<std::string> saved;
  auto summary = train(read_config_file(dir / "train.json"), std::nullopt,
                       [&](const std::string& hook, const Json& kwargs) -> std::vector<Json> {
                         if (hook == "on_checkpoint_saved" && kwargs["reason"] == "requested") saved.push_back(kwargs["path"]);
                         return {};
                       },
                       dir / "train.json");
  EXPECT_EQ(summary.outcome, RunOutcome::completed);
  EXPECT_GE(saved.size(), 3u) << "a save every 3 steps";
  for (const auto& path : saved) EXPECT_FALSE(fs::exists(path)) << path << " was not deleted";
  const std::string log = read_text(dir / "run" / "train.log");
  EXPECT_EQ(log.find("refused"), std::string::npos) << log;
  EXPECT_NE(log.find("requested-rolling-"), std::string::npos);
}

// A hook Bulkhead never calls is not dropped without a word: the console says so at load. (A model
// hook without a grant stops the run: ModelAccess.AModelHookWithoutAGrantStopsTheRunNamingTheGrant.)
TEST(PythonPlugins, EveryDream2HooksThatAreNeverCalledAreNamedAtLoad) {
  auto dir = scratch("project");
  fs::create_directories(dir / "plugins");
  std::ofstream(dir / "plugins" / "loader.py") << R"(from plugins.plugins import BasePlugin

class Loader(BasePlugin):
    def on_backpropagation(self, **kwargs):
        pass

    def on_epoch_end(self, **kwargs):
        pass
)";
  Json config = tiny_config(dir / "run", 1);
  config["plugins"] = {"plugins.loader.Loader"};
  std::ofstream(dir / "train.json") << config.dump();
  EXPECT_EQ(train(read_config_file(dir / "train.json"), std::nullopt, {}, dir / "train.json").outcome, RunOutcome::completed);
  const std::string log = read_text(dir / "run" / "train.log");
  EXPECT_NE(log.find("[plugin:Loader] [warning] Loader defines on_backpropagation, which Bulkhead does not call"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("model access"), std::string::npos);
}

// What cannot cross a process boundary says so at load, and training does not begin.
TEST(PythonPlugins, EveryDream2ModelObjectsAreRefusedAtLoadSayingWhy) {
  auto dir = scratch("project");
  fs::create_directories(dir / "plugins");
  std::ofstream(dir / "plugins" / "ti.py") << R"(from plugins.plugins import BasePlugin
from train import compute_snr

class TI(BasePlugin):
    pass
)";
  Json config = tiny_config(dir / "run", 1);
  config["plugins"] = {"plugins.ti.TI"};
  std::ofstream(dir / "train.json") << config.dump();
  try {
    train(read_config_file(dir / "train.json"), std::nullopt, {}, dir / "train.json");
    FAIL() << "training began";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("train.compute_snr cannot work out of process"), std::string::npos) << what;
    EXPECT_NE(what.find("plugins.ti.TI"), std::string::npos) << what;
  }
  EXPECT_FALSE(fs::exists(dir / "run" / "checkpoints" / "final-ep0001-gs000007.pt"));
}

// An interpreter without the SDK's modules stops the run before training, saying what to install,
// never "quarantined, training went on".
TEST(PythonPlugins, AnInterpreterWithoutTheSdkModulesIsAConfigError) {
  auto dir = scratch("project");
  // Python without its site packages: no zmq, msgpack or PIL.
  std::ofstream(dir / "bare-python") << "#!/bin/sh\nexec /usr/bin/python3 -S \"$@\"\n";
  fs::permissions(dir / "bare-python", fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
  Json config = tiny_config(dir / "run", 1);
  config["python"] = "bare-python";
  config["plugins"] = {"example_plugin"};
  try {
    resolve_config(config, (dir / "train.json").string(), dir);
    FAIL() << "accepted an interpreter without the SDK's modules";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("/python: " + (dir / "bare-python").string() + " lacks what Python plugins need: zmq, msgpack, PIL"),
              std::string::npos) << what;
    EXPECT_NE(what.find("apt-get install python3-zmq python3-msgpack python3-pil"), std::string::npos) << what;
    EXPECT_NE(what.find("pip install pyzmq msgpack pillow"), std::string::npos) << what;
  }
}

// ---- the real program -------------------------------------------------------------------------

// A Python plugin that starts a child process and says so in a folder its entry grants it.
fs::path child_starting_plugin(const fs::path& dir) {
  fs::create_directories(dir / "parent");
  fs::create_directories(dir / "out");
  fs::permissions(dir / "out", fs::perms::all);  // the plugin's user (nobody, under root) writes there
  std::ofstream(dir / "parent" / "plugin.json")
      << Json{{"name", "parent"}, {"version", "1.0.0"}, {"description", "starts a child"}, {"runtime", "python"},
              {"entry", "parent.Parent"}, {"hooks", {"on_step_end"}}}
             .dump();
  std::ofstream(dir / "parent" / "parent.py") << R"(import os, subprocess
from bulkhead_plugin import BasePlugin

class Parent(BasePlugin):
    def configure(self):
        subprocess.Popen(["sleep", "600"])
        open(os.path.join(self.options["out"], "started-%d" % os.getpid()), "w").close()
)";
  return dir / "parent";
}

Json child_starting_entry(const fs::path& dir) {
  return {{"name", child_starting_plugin(dir).string()}, {"options", {{"out", (dir / "out").string()}}},
          {"grant", {{"write", {(dir / "out").string()}}}}};
}

bool started(const fs::path& dir) {
  return fs::exists(dir / "out") && !fs::is_empty(dir / "out");
}

// Every process below `ancestor` (its plugin hosts, their jails, the plugins' own children).
std::vector<pid_t> descendants(pid_t ancestor) {
  std::map<pid_t, pid_t> parent_of;
  for (const auto& p : all_proc_stats()) parent_of[p.pid] = p.ppid;
  std::vector<pid_t> found;
  for (const auto& [pid, parent] : parent_of) {
    for (pid_t up = parent; up > 1;) {
      if (up == ancestor) {
        found.push_back(pid);
        break;
      }
      const auto next = parent_of.find(up);
      up = next == parent_of.end() ? 0 : next->second;
    }
  }
  return found;
}

bool alive(pid_t pid) { return proc_alive(pid); }

// A SIGKILL takes effect a moment after it is sent: allow up to 3 s.
bool gone_soon(pid_t pid) {
  for (int i = 0; i < 300 && alive(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return !alive(pid);
}


// A normal run with a crashing plugin and a plugin with a child process: the run finishes, the
// report table shows the crashes and restarts, and no process the plugins started remains.
TEST(RealProgram, NormalExitLeavesNoProcessAndReportsCrashes) {
  auto dir = scratch("run");
  Json config = tiny_config(dir / "run", 1);
  config["plugins"] = {child_starting_entry(dir), fault_entry("fault", "segfault", "transform_caption", 50)};
  std::ofstream(dir / "train.json") << config.dump();
  const pid_t trainer = start_trainer(dir / "train.json", dir / "output.txt");
  while (!started(dir) && alive(trainer)) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto pids = descendants(trainer);
  int status = 0;
  waitpid(trainer, &status, 0);
  const std::string output = read_text(dir / "output.txt");
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;

  ASSERT_GE(pids.size(), 4u) << "the plugins' hosts, their jails and the child";
  for (pid_t pid : pids) EXPECT_TRUE(gone_soon(pid)) << "process " << pid << " outlived the trainer";

  // The table at the end: one row per plugin and hook, then each plugin's restarts.
  const auto table = output.substr(output.find("plugins:"));
  EXPECT_NE(table.find("plugin                hook"), std::string::npos) << table;
  // The loader sends captions one by one or in batches, so the crashes are in either row.
  const std::string caption_rows = "fault                 transform_caption";  // and transform_captions
  long crashes = 0;
  for (auto row = table.find(caption_rows); row != std::string::npos; row = table.find(caption_rows, row + 1)) {
    std::istringstream fields(table.substr(row, table.find('\n', row) - row));
    std::string plugin, hook, p50, p99;
    long calls = 0, skipped = 0, timeouts = 0, row_crashes = 0;
    fields >> plugin >> hook >> calls >> skipped >> p50 >> p99 >> timeouts >> row_crashes;
    crashes += row_crashes;
  }
  EXPECT_GT(crashes, 0) << table;
  const auto restarts_line = table.find("  fault: ");
  ASSERT_NE(restarts_line, std::string::npos) << table;
  EXPECT_GT(std::stol(table.substr(restarts_line + 9)), 0) << table;
}

TEST(RealProgram, CtrlCLeavesNoProcess) {
  auto dir = scratch("run");
  Json config = tiny_config(dir / "run", 200);
  config["plugins"] = {child_starting_entry(dir)};
  std::ofstream(dir / "train.json") << config.dump();
  const pid_t trainer = start_trainer(dir / "train.json", dir / "output.txt");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while ((read_metrics(dir / "run").size() < 3 || !started(dir)) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto pids = descendants(trainer);
  ASSERT_GE(pids.size(), 3u) << "the plugin's host, its jail and its child";
  for (pid_t pid : pids) EXPECT_TRUE(alive(pid));
  kill(trainer, SIGINT);
  int status = 0;
  waitpid(trainer, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << read_text(dir / "output.txt");
  for (pid_t pid : pids) EXPECT_TRUE(gone_soon(pid)) << "process " << pid << " outlived the trainer";
}

// A plugin whose code is fixed during a run is restarted with `bulkhead plugins restart`: the
// training goes on, and from then on the new code runs.
TEST(RealProgram, APluginRestartedMidRunRunsItsNewCode) {
  auto dir = scratch("run");
  fs::create_directories(dir / "versioned");
  std::ofstream(dir / "versioned" / "plugin.json")
      << Json{{"name", "versioned"}, {"version", "1.0.0"}, {"description", "records its code's version"},
              {"runtime", "python"}, {"entry", "versioned.Versioned"}, {"hooks", {"on_step_end"}}}
             .dump();
  auto write_code = [&](int version) {
    std::ofstream(dir / "versioned" / "versioned.py.tmp") << R"(import os
from bulkhead_plugin import BasePlugin
VERSION = )" << version << R"(

class Versioned(BasePlugin):
    def on_step_end(self, **kwargs):
        with open(os.path.join(self.options["out"], "version-%d" % VERSION), "w") as out:
            out.write(str(kwargs["global_step"]))
)";
    fs::rename(dir / "versioned" / "versioned.py.tmp", dir / "versioned" / "versioned.py");
  };
  write_code(1);
  Json config = tiny_config(dir / "run", 200);
  const fs::path scratch_dir = dir / "out";  // granted: the plugin writes there, the test reads
  fs::create_directories(scratch_dir);
  fs::permissions(scratch_dir, fs::perms::all);
  config["plugins"] = {{{"name", (dir / "versioned").string()}, {"options", {{"out", scratch_dir.string()}}},
                        {"grant", {{"write", {scratch_dir.string()}}}}}};
  std::ofstream(dir / "train.json") << config.dump();
  const pid_t trainer = start_trainer(dir / "train.json", dir / "output.txt");
  auto wait_for = [](const fs::path& file) {
    for (int i = 0; i < 3000 && !fs::exists(file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return fs::exists(file);
  };
  ASSERT_TRUE(wait_for(scratch_dir / "version-1")) << read_text(dir / "output.txt");

  write_code(2);
  const std::string restart = std::string(BULKHEAD_EXE) + " plugins restart versioned --run " + (dir / "run").string();
  FILE* pipe = popen((restart + " 2>&1").c_str(), "r");
  char line[512] = {};
  const bool answered = std::fgets(line, sizeof line, pipe) != nullptr;
  const int restart_status = pclose(pipe);
  EXPECT_TRUE(answered);
  EXPECT_EQ(std::string(line).rfind("restarted versioned at step ", 0), 0u) << line;
  EXPECT_EQ(WEXITSTATUS(restart_status), 0) << line;
  EXPECT_TRUE(wait_for(scratch_dir / "version-2")) << "the new code never ran";

  const std::string unknown = std::string(BULKHEAD_EXE) + " plugins restart nosuch --run " + (dir / "run").string();
  EXPECT_EQ(WEXITSTATUS(std::system((unknown + " > /dev/null 2>&1").c_str())), 1);

  kill(trainer, SIGINT);
  int status = 0;
  waitpid(trainer, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << read_text(dir / "output.txt");
  const Json report = read_json(dir / "run" / "plugin-report.json")["plugins"][0];
  EXPECT_EQ(report["reloads"].get<long>(), 1) << report.dump(2);
  EXPECT_NE(read_text(dir / "run" / "train.log").find("restart asked for an unknown plugin 'nosuch'"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::testing
