// Plugin state (docs/protocol.md, section 10), through real training runs with real plugin hosts:
// a plugin that is killed every few calls, reloaded, watched or resumed after a SIGKILL decides
// exactly as an uninterrupted one, in each SDK; a state never reaches another plugin; a failing,
// oversized or refused state is counted and training goes on.
//
// The stateful test plugins (tests/plugins/stateful*) run one algorithm: at each epoch's end they
// count, step a 32-bit generator and set grad_accum from both, and log "epoch end E: random R,
// grad_accum G". A plugin that lost its state logs other lines; expected_decisions computes the
// right ones by hand.
#include <signal.h>

#include <cstdint>
#include <sstream>

#include "train/run_control.hpp"
#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

Json stateful_entry(const std::string& plugin, Json options, bool keep_state = true) {
  return {{"name", test_plugin(plugin).string()},
          {"options", std::move(options)},
          {"keep_state", keep_state},
          {"max_restarts", 1000},
          {"restart_backoff_ms", 0}};
}

Json config_with(const fs::path& run_dir, int epochs, Json plugins) {
  Json config = tiny_config(run_dir, epochs);
  config["plugins"] = std::move(plugins);
  return config;
}

std::vector<std::string> expected_decisions(std::uint32_t random, int epochs) {
  std::vector<std::string> lines;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    random = random * 1664525u + 1013904223u;
    const unsigned grad_accum = 1 + (unsigned(epoch) + (random >> 16)) % 3;
    lines.push_back("epoch end " + std::to_string(epoch) + ": random " + std::to_string(random) + ", grad_accum " +
                    std::to_string(grad_accum));
  }
  return lines;
}

// What the plugin logged starting with `start`, from train.log.
std::vector<std::string> logged(const fs::path& run_dir, const std::string& plugin, const std::string& start) {
  std::vector<std::string> lines;
  std::istringstream log(read_text(run_dir / "train.log"));
  const std::string tag = "[plugin:" + plugin + "] [info] ";
  for (std::string line; std::getline(log, line);)
    if (auto at = line.find(tag); at != std::string::npos && line.compare(at + tag.size(), start.size(), start) == 0)
      lines.push_back(line.substr(at + tag.size()));
  return lines;
}

// What the plugin logged at each epoch's end.
std::vector<std::string> decisions(const fs::path& run_dir, const std::string& plugin) {
  return logged(run_dir, plugin, "epoch end");
}

// The plugin's word on the exact values of its state after each set_state: every one came back
// bit for bit (floats as floats, -0.0, subnormals, NaN payloads, the widest integers).
void expect_exact_states(const fs::path& run_dir, const std::string& plugin) {
  const auto lines = logged(run_dir, plugin, "state ");
  EXPECT_FALSE(lines.empty()) << plugin << " never had its state back";
  for (const auto& line : lines) EXPECT_EQ(line, "state exact") << plugin;
}

Json plugin_report(const fs::path& run_dir, const std::string& plugin) {
  const Json report = read_json(run_dir / "plugin-report.json");
  for (const auto& p : report["plugins"])
    if (p["name"] == plugin) return p;
  return Json();
}

long crashes(const Json& report) {
  long total = 0;
  for (const auto& [hook, counters] : report["hooks"].items()) total += counters["crashes"].get<long>();
  return total;
}

std::vector<std::pair<double, int>> losses(const fs::path& run_dir) {
  std::vector<std::pair<double, int>> values;
  for (const auto& record : read_metrics(run_dir)) values.emplace_back(record["loss"], record["grad_accum"]);
  return values;
}

const std::vector<std::pair<std::string, std::uint32_t>> kPlugins = {
    {"stateful-python", 11}, {"stateful-node", 22}, {"stateful", 33}};

Json three_sdks(int crash_every, bool keep_state) {
  Json entries = Json::array();
  int every = crash_every;
  for (const auto& [plugin, seed] : kPlugins)
    entries.push_back(stateful_entry(plugin, {{"seed", seed}, {"crash_every", crash_every ? every++ : 0}}, keep_state));
  return entries;
}

TEST(PluginState, PluginsKilledEveryFewCallsDecideAsIfNeverRestarted) {
  const auto dir = scratch("killed");
  const int epochs = 5;
  ASSERT_EQ(train(config_with(dir / "clean", epochs, three_sdks(0, true))).outcome, RunOutcome::completed);
  ASSERT_EQ(train(config_with(dir / "killed", epochs, three_sdks(5, true))).outcome, RunOutcome::completed);
  ASSERT_EQ(train(config_with(dir / "forgetful", epochs, three_sdks(5, false))).outcome, RunOutcome::completed);

  for (const auto& [plugin, seed] : kPlugins) {
    SCOPED_TRACE(plugin);
    const auto expected = expected_decisions(seed, epochs);
    EXPECT_EQ(decisions(dir / "clean", plugin), expected);
    EXPECT_EQ(decisions(dir / "killed", plugin), expected);
    // The same crashes without the state: the test can tell.
    EXPECT_NE(decisions(dir / "forgetful", plugin), expected);

    const Json report = plugin_report(dir / "killed", plugin);
    EXPECT_GE(crashes(report), 3) << report.dump(2);
    EXPECT_GE(report["state"]["restored"].get<long>(), 3) << report.dump(2);
    // Each plugin refuses a state that is not its own: none was ever offered one.
    EXPECT_EQ(report["state"]["refused"], 0) << report.dump(2);
    expect_exact_states(dir / "killed", plugin);
  }
  // The same decisions, so the same training, to the bit.
  EXPECT_EQ(losses(dir / "killed"), losses(dir / "clean"));
  EXPECT_NE(losses(dir / "forgetful"), losses(dir / "clean"));
}

// A crash in the last step of an epoch, with a long backoff: the epoch's end (a call hook) waits
// for the restart, up to its deadline, instead of being skipped, so the plugin decides at every
// epoch's end with its state, and the report counts the waits.
TEST(PluginState, AnEpochsEndWaitsForARestartInBackoff) {
  const auto dir = scratch("backoff");
  const int epochs = 2;
  const RunSummary clean = train(config_with(dir / "clean", epochs, Json::array({stateful_entry("stateful-python", {{"seed", 5}})})));
  ASSERT_EQ(clean.outcome, RunOutcome::completed);
  const long steps = static_cast<long>(read_metrics(dir / "clean").size()) / epochs;

  // Each process crashes at its steps-th step start: the first in epoch 1's last step, its
  // successor (started at epoch 1's end) in epoch 2's last step.
  Json entry = stateful_entry("stateful-python", {{"seed", 5}, {"crash_every", steps}});
  entry["restart_backoff_ms"] = 2000;
  ASSERT_EQ(train(config_with(dir / "crashing", epochs, Json::array({entry}))).outcome, RunOutcome::completed);

  EXPECT_EQ(decisions(dir / "crashing", "stateful-python"), expected_decisions(5, epochs));
  const Json report = plugin_report(dir / "crashing", "stateful-python");
  EXPECT_EQ(crashes(report), epochs) << report.dump(2);
  EXPECT_EQ(report["restarts"].get<long>(), epochs) << report.dump(2);
  EXPECT_EQ(report["hooks"]["on_epoch_end"]["ok"].get<long>(), epochs) << report.dump(2);
  EXPECT_EQ(report["hooks"]["on_epoch_end"]["skipped"].get<long>(), 0) << report.dump(2);
  EXPECT_GE(report["backoff_waits"].get<long>(), epochs) << report.dump(2);
  EXPECT_EQ(losses(dir / "crashing"), losses(dir / "clean"));
}

TEST(PluginState, ResumeAfterSigkillGivesTheStraightRunsWeights) {
  const auto dir = scratch("resume");
  const int epochs = 4;
  auto config = [&](const fs::path& run) {
    Json c = config_with(run, epochs, Json::array({stateful_entry("stateful-python", {{"seed", 7}})}));
    c["save_every_n_epochs"] = 1;
    return c;
  };
  ASSERT_EQ(train(config(dir / "straight")).outcome, RunOutcome::completed);

  const fs::path file = dir / "train.json";
  std::ofstream(file) << config(dir / "killed").dump();
  const pid_t trainer = start_trainer(file, dir / "first.out");
  fs::path checkpoint;  // the one saved after the second epoch, once latest.txt names it (what --resume takes)
  ASSERT_TRUE(wait_until([&] {
    try {
      const fs::path latest = resolve_checkpoint_path(dir / "killed");
      if (latest.filename().string().rfind("epoch-ep0002-", 0) == 0) checkpoint = latest;
    } catch (const std::exception&) {  // no checkpoint yet
    }
    return !checkpoint.empty();
  })) << read_text(dir / "first.out");
  kill(trainer, SIGKILL);
  wait_exit(trainer);
  EXPECT_EQ(Checkpoint(checkpoint).info().plugin_states["stateful-python"]["state"]["epochs"], 2);

  ASSERT_EQ(run_bulkhead({"train", "--config", file.string(), "--resume", (dir / "killed").string()}, dir / "resumed.out"), 0)
      << read_text(dir / "resumed.out");
  EXPECT_EQ(decisions(dir / "killed", "stateful-python"), decisions(dir / "straight", "stateful-python"));
  expect_exact_states(dir / "killed", "stateful-python");  // through the checkpoint
  const auto final_of = [](const fs::path& run) { return resolve_checkpoint_path(run); };
  EXPECT_TRUE(same_weights(final_of(dir / "killed"), final_of(dir / "straight")));
}

// bulkhead plugins restart NAME keeps the state; --fresh drops it.
TEST(PluginState, ReloadKeepsTheStateUnlessFresh) {
  const auto dir = scratch("reload");
  const int epochs = 4;
  for (const bool keep : {true, false}) {
    const fs::path run = dir / (keep ? "keep" : "fresh");
    Trainer trainer(resolve_config(config_with(run, epochs, Json::array({stateful_entry("stateful-node", {{"seed", 5}})})), "test"));
    trainer.set_hook_observer([&](const std::string& hook, const Json& kwargs) -> std::vector<Json> {
      if (hook == "on_epoch_start" && kwargs["epoch"] == 2) run_control::post(run, run_control::Request(run_control::Action::restart_plugin, "stateful-node", keep));
      return {};
    });
    ASSERT_EQ(trainer.run().outcome, RunOutcome::completed);
    const Json report = plugin_report(run, "stateful-node");
    EXPECT_EQ(report["reloads"], 1) << report.dump(2);
    if (keep) {
      EXPECT_EQ(decisions(run, "stateful-node"), expected_decisions(5, epochs));
      EXPECT_EQ(report["state"]["restored"], 1) << report.dump(2);
    } else {
      EXPECT_NE(decisions(run, "stateful-node"), expected_decisions(5, epochs));
      EXPECT_EQ(report["state"]["restored"], 0) << report.dump(2);
    }
  }
}

// bulkhead train --watch-plugins: an edited plugin is restarted with its state.
TEST(PluginState, AWatchedPluginWhoseFilesChangeIsRestartedWithItsState) {
  const auto dir = scratch("watch");
  const fs::path plugin = dir / "stateful-python";
  fs::copy(test_plugin("stateful-python"), plugin, fs::copy_options::recursive);
  Json entry = stateful_entry("stateful-python", {{"seed", 9}});
  entry["name"] = plugin.string();
  const int epochs = 3;
  Trainer trainer(resolve_config(config_with(dir / "run", epochs, Json::array({entry})), "test"));
  trainer.watch_plugins();
  trainer.set_hook_observer([&](const std::string& hook, const Json& kwargs) -> std::vector<Json> {
    if (hook == "on_epoch_start" && kwargs["epoch"] == 1) {
      std::ofstream(plugin / "stateful_python.py", std::ios::app) << "\n# edited while training\n";
      std::this_thread::sleep_for(std::chrono::milliseconds(1600));  // the watch reports a change that settled
    }
    return {};
  });
  ASSERT_EQ(trainer.run().outcome, RunOutcome::completed);
  EXPECT_NE(read_text(dir / "run" / "train.log").find("stateful-python: its files changed: restarting it with its state"),
            std::string::npos);
  const Json report = plugin_report(dir / "run", "stateful-python");
  EXPECT_EQ(report["reloads"], 1) << report.dump(2);
  EXPECT_EQ(report["state"]["restored"], 1) << report.dump(2);
  EXPECT_EQ(decisions(dir / "run", "stateful-python"), expected_decisions(9, epochs));
}

TEST(PluginState, AFailingOrOversizedGetStateIsACountedFaultAndTrainingGoesOn) {
  const auto dir = scratch("faulty");
  Json oversized = stateful_entry("stateful-python", {{"seed", 3}, {"state_bytes", 2 << 20}});
  oversized["limits"] = {{"max_state_mb", 1}};
  ASSERT_EQ(train(config_with(dir / "oversized", 2, Json::array({oversized}))).outcome, RunOutcome::completed);
  Json report = plugin_report(dir / "oversized", "stateful-python");
  EXPECT_GE(report["hooks"]["get_state"]["invalid_replies"].get<long>(), 3) << report.dump(2);
  EXPECT_NE(report["hooks"]["get_state"]["last_fault"].get<std::string>().find("over limits.max_state_mb of 1 MB"),
            std::string::npos);
  EXPECT_EQ(report["state"]["kept"], false);
  EXPECT_EQ(decisions(dir / "oversized", "stateful-python"), expected_decisions(3, 2));

  ASSERT_EQ(train(config_with(dir / "failing", 2, Json::array({stateful_entry("stateful-python", {{"seed", 3}, {"fail_get_state", true}})})))
                .outcome,
            RunOutcome::completed);
  report = plugin_report(dir / "failing", "stateful-python");
  EXPECT_GE(report["hooks"]["get_state"]["errors"].get<long>(), 3) << report.dump(2);
  EXPECT_NE(report["hooks"]["get_state"]["last_fault"].get<std::string>().find("get_state fails on purpose"), std::string::npos);
}

// New code that cannot read the old state starts empty, with a warning; never fatal.
TEST(PluginState, APluginThatRefusesItsStateStartsEmpty) {
  const auto dir = scratch("refused");
  const Json entry = stateful_entry("stateful-python", {{"seed", 4}, {"crash_every", 6}, {"reject_state", true}});
  ASSERT_EQ(train(config_with(dir / "run", 3, Json::array({entry}))).outcome, RunOutcome::completed);
  const Json report = plugin_report(dir / "run", "stateful-python");
  EXPECT_GE(report["state"]["refused"].get<long>(), 1) << report.dump(2);
  EXPECT_EQ(report["state"]["restored"], 0);
  EXPECT_NE(report["state"]["last_problem"].get<std::string>().find("this version reads no earlier state"), std::string::npos);
  EXPECT_NE(read_text(dir / "run" / "train.log").find("it starts empty"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::testing
