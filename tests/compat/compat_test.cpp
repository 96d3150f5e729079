// Frozen plugins of older protocol versions and SDKs against today's trainer (tests/compat/README.md):
// each trains as it did, or is refused at once naming what it lacks. Never edit the plugins.
#include <chrono>

#include "trainer/test_support.hpp"

namespace bulkhead::testing {
namespace {

using namespace std::chrono_literals;

fs::path compat_plugin(const std::string& name) { return paths::home() / "tests" / "compat" / name; }

// Served, all of it: every call answered, none wrong, no restart.
void expect_served(const Json& plugin, const std::vector<std::string>& hooks) {
  const std::string dump = plugin.dump(2);
  ASSERT_FALSE(plugin.is_null()) << "the plugin is not in plugin-report.json";
  EXPECT_EQ(plugin["protocol"], 1) << dump;
  EXPECT_FALSE(plugin["quarantined"].get<bool>()) << dump;
  EXPECT_EQ(plugin["restarts"], 0) << dump;
  for (const auto& hook : hooks) {
    EXPECT_GT(hook_counter(plugin, hook, "calls"), 0) << hook << "\n" << dump;
    EXPECT_EQ(hook_counter(plugin, hook, "ok"), hook_counter(plugin, hook, "calls")) << hook << "\n" << dump;
  }
}

// tests/compat/raw-v1: the no-SDK plugin exactly as docs/protocol.md of 2026-11-23 allowed (no
// PLAIN credentials, "protocol": 1). It transforms every caption and, at stop_at_step, asks
// through its on_step_end reply to stop: the run stops there.
TEST(Compat, TheRawVersion1PluginTrainsAndIsObeyed) {
  const auto dir = scratch("run");
  Json config = tiny_config(dir, 2);
  config["plugins"] = {{{"name", compat_plugin("raw-v1").string()}, {"options", {{"stop_at_step", 5}}}}};
  const RunSummary summary = train(config);
  EXPECT_EQ(summary.outcome, RunOutcome::stopped);
  // Its step hooks are notifies: the stop takes effect when the reply has come, a step or two on.
  EXPECT_GE(summary.global_step, 6) << "it asked to stop in on_step_end of step 5";
  EXPECT_LT(summary.global_step, 14) << "the epoch ran to its end";
  const Json plugin = plugin_report_of(dir, "raw-python");
  expect_served(plugin, {"transform_caption", "on_step_end"});
  const std::string log = read_text(dir / "train.log");
  EXPECT_NE(log.find("without ZeroMQ PLAIN credentials"), std::string::npos) << log;
  EXPECT_NE(log.find("protocol 1) is ready"), std::string::npos) << log;
}

// tests/compat/python-sdk-v1: a plugin on the Python SDK of 2026-11-24, vendored into its folder.
// It says at each epoch's end how many captions and images it transformed: all of them.
TEST(Compat, ThePythonSdkOfProtocol1TransformsEveryCaptionAndImage) {
  const auto dir = scratch("run");
  Json config = tiny_config(dir, 1);
  config["plugins"] = {compat_plugin("python-sdk-v1").string()};
  const RunSummary summary = train(config);
  EXPECT_EQ(summary.outcome, RunOutcome::completed);
  const Json plugin = plugin_report_of(dir, "python-sdk-v1");
  expect_served(plugin, {"transform_caption", "transform_pil_image", "on_epoch_end"});
  const long items = hook_counter(plugin, "transform_caption", "calls");
  const std::string said = "epoch 0: " + std::to_string(items) + " captions, " + std::to_string(items) + " images";
  const std::string log = read_text(dir / "train.log");
  EXPECT_NE(log.find(said), std::string::npos) << said << "\n" << log;
}

// Outside bubblewrap's jail the socket cannot tell a plugin's connection from another process's
// without credentials: a protocol-1 plugin is refused before training, at once, saying why.
TEST(Compat, TheWeakJailRefusesAProtocol1PluginAtOnceNamingTheCredentials) {
  const auto dir = scratch("run");
  Json config = tiny_config(dir, 1);
  config["jail"] = {{"mode", "weak"}};
  config["plugins"] = {compat_plugin("raw-v1").string()};
  const auto started = std::chrono::steady_clock::now();
  try {
    train(config);
    ADD_FAILURE() << "training began with a plugin it cannot authenticate";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("without ZeroMQ PLAIN credentials"), std::string::npos) << what;
    EXPECT_NE(what.find("docs/protocol.md, section 2"), std::string::npos) << what;
    EXPECT_NE(what.find("weak jail"), std::string::npos) << what;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s) << "not at once: the hello's 10 s ran out";
}

// `plugins check` passes both at protocol 1 (the raw one answers unknown_method to every hook it
// does not declare) and says which version it spoke.
TEST(Compat, PluginsCheckPassesThemAtProtocol1) {
  for (const char* name : {"raw-v1", "python-sdk-v1"}) {
    const auto output = scratch(name) / "check.txt";
    const int status = run_bulkhead({"plugins", "check", compat_plugin(name).string()}, output);
    const std::string text = read_text(output);
    EXPECT_EQ(status, 0) << text;
    EXPECT_NE(text.find("handshake ok, protocol 1"), std::string::npos) << text;
    EXPECT_NE(text.find("conforms to protocol 1"), std::string::npos) << text;
  }
}

// tests/compat/cpp-abi2: a library built against the C++ SDK of plugin ABI 2. Its vtable is not
// today's: it is refused at load, naming both ABIs, by `plugins check` and before training.
TEST(Compat, ACppPluginOfAnOlderAbiIsRefusedNamingBoth) {
  const auto output = scratch("check") / "check.txt";
  EXPECT_NE(run_bulkhead({"plugins", "check", compat_plugin("cpp-abi2").string()}, output), 0);
  const std::string text = read_text(output);
  const std::string both = "was built for plugin ABI 2, this host speaks " + std::to_string(kPluginAbiVersion);
  EXPECT_NE(text.find(both), std::string::npos) << text;

  const auto dir = scratch("run");
  Json config = tiny_config(dir, 1);
  config["plugins"] = {compat_plugin("cpp-abi2").string()};
  try {
    train(config);
    ADD_FAILURE() << "training began with a library of another ABI";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(both), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace bulkhead::testing
