// Remote plugin hosts on loopback (docs/protocol.md, Remote hosts): a real `bulkhead host serve`
// with CURVE keys made by `bulkhead host keys`, and real training runs that use it. A remote
// caption plugin trains as the local one does; a wrong server key, an unlisted trainer key and a
// killed server are each named, within seconds, through the plugin's failure policy.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <regex>

#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

using Clock = std::chrono::steady_clock;

// `bulkhead host keys --out DIR/STEM`: DIR/STEM.key and DIR/STEM.pub.
fs::path make_keys(const fs::path& dir, const std::string& stem) {
  const int status = run_bulkhead({"host", "keys", "--out", (dir / stem).string()}, dir / (stem + ".out"));
  EXPECT_EQ(status, 0) << read_text(dir / (stem + ".out"));
  return dir / stem;
}

// A real `bulkhead host serve` of one plugin; stopped (SIGTERM) when the test ends.
class Server {
 public:
  Server(const fs::path& dir, const std::vector<std::string>& args, const std::string& listen = "tcp://127.0.0.1:*")
      : output_(dir / ("serve-" + std::to_string(++started_) + ".out")) {
    std::vector<std::string> all{"host", "serve", "--listen", listen};
    all.insert(all.end(), args.begin(), args.end());
    pid_ = start_bulkhead(all, output_);
    const std::regex serving("serving \\S+ \\S+ \\(\\S+\\) on (tcp://\\S+)");
    std::smatch found;
    EXPECT_TRUE(wait_until([&] {
      const std::string text = read_text(output_);
      if (!std::regex_search(text, found, serving)) return false;
      endpoint_ = found[1];
      return true;
    })) << read_text(output_);
  }
  ~Server() { stop(SIGTERM); }

  const std::string& endpoint() const { return endpoint_; }
  std::string output() const { return read_text(output_); }
  // Kills it as a lost machine would die (SIGKILL), or stops it; returns its exit status.
  int stop(int signal) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, signal);
    const int status = wait_exit(pid_);
    pid_ = -1;
    return status;
  }

 private:
  static inline int started_ = 0;
  fs::path output_;
  pid_t pid_ = -1;
  std::string endpoint_;
};

struct Keys {
  fs::path server, trainer;  // stems: .key and .pub beside
};

Keys make_both(const fs::path& dir) { return {make_keys(dir, "host"), make_keys(dir, "trainer")}; }

std::vector<std::string> curve_args(const Keys& keys, const std::string& plugin = "caption_tag_shuffle") {
  return {"--plugin", plugin, "--key", keys.server.string() + ".key", "--allow", keys.trainer.string() + ".pub"};
}

Json remote_entry(const std::string& endpoint, const fs::path& server_pub, const fs::path& trainer_key) {
  return {{"name", "caption_tag_shuffle"},
          {"options", {{"keep_tags", 1}}},
          {"remote", endpoint},
          {"server_key", server_pub.string()},
          {"client_key", trainer_key.string()}};
}

std::vector<double> losses(const fs::path& run_dir) {
  std::vector<double> values;
  for (const auto& record : read_metrics(run_dir)) values.push_back(record["loss"].get<double>());
  return values;
}

TEST(RemoteHosts, ACaptionPluginTrainsAsTheLocalOneDoes) {
  const fs::path dir = scratch("remote");
  const Keys keys = make_both(dir);
  Server server(dir, curve_args(keys));

  Json local = tiny_config(dir / "local", 2);
  local["plugins"] = Json::array({{{"name", "caption_tag_shuffle"}, {"options", {{"keep_tags", 1}}}}});
  Json remote = tiny_config(dir / "remote", 2);
  remote["plugins"] = Json::array({remote_entry(server.endpoint(), keys.server.string() + ".pub", keys.trainer.string() + ".key")});
  ASSERT_EQ(train(local).outcome, RunOutcome::completed);
  ASSERT_EQ(train(remote).outcome, RunOutcome::completed);

  // The same captions, so the same losses, bit for bit.
  EXPECT_EQ(losses(dir / "remote"), losses(dir / "local"));
  const Json report = plugin_report_of(dir / "remote", "caption_tag_shuffle");
  EXPECT_EQ(report["remote"]["endpoint"], server.endpoint()) << report.dump(2);
  EXPECT_EQ(report["remote"]["runtime"], "cpp");
  EXPECT_EQ(report["remote"]["secure"], true);
  EXPECT_EQ(report["protocol"], 2);
  EXPECT_EQ(report["restarts"], 0) << report.dump(2);
  EXPECT_EQ(hook_counter(report, "transform_captions", "items"), hook_counter(plugin_report_of(dir / "local", "caption_tag_shuffle"), "transform_captions", "items"));
  EXPECT_EQ(hook_counter(report, "transform_captions", "items_failed"), 0);
  EXPECT_NE(server.output().find("started"), std::string::npos) << server.output();
}

// Fail-open: the plugin is skipped and each failure counted; the run goes on.
TEST(RemoteHosts, AWrongServerKeyIsNamedAndTheRunGoesOn) {
  const fs::path dir = scratch("wrong-server-key");
  const Keys keys = make_both(dir);
  const fs::path impostor = make_keys(dir, "impostor");
  Server server(dir, curve_args(keys));
  Json config = tiny_config(dir / "run", 1);
  Json entry = remote_entry(server.endpoint(), impostor.string() + ".pub", keys.trainer.string() + ".key");
  entry["on_failure"] = "skip";
  config["plugins"] = Json::array({entry});
  const auto began = Clock::now();
  ASSERT_EQ(train(config).outcome, RunOutcome::completed);
  const std::string log = read_text(dir / "run" / "train.log");
  EXPECT_NE(log.find("broke off the CURVE handshake: its public key is not the server_key this entry pins"), std::string::npos) << log;
  const Json report = plugin_report_of(dir / "run", "caption_tag_shuffle");
  EXPECT_GT(hook_counter(report, "(start)", "crashes") + hook_counter(report, "(start)", "errors") +
                hook_counter(report, "(start)", "timeouts"),
            0)
      << report.dump(2);
  EXPECT_GT(hook_counter(report, "transform_captions", "skipped"), 0) << report.dump(2);
  // Named at once, not after a hello's 10 s wait at every start.
  EXPECT_LT(Clock::now() - began, std::chrono::seconds(60));
  EXPECT_EQ(server.output().find("started"), std::string::npos) << "no host was started for it\n" << server.output();
}

// Fail-closed: training does not begin, and the error says which key to allow.
TEST(RemoteHosts, AnUnlistedTrainerKeyIsNamedAndStopsTheRun) {
  const fs::path dir = scratch("unlisted");
  const Keys keys = make_both(dir);
  const fs::path stranger = make_keys(dir, "stranger");
  Server server(dir, curve_args(keys));
  Json config = tiny_config(dir / "run", 1);
  Json entry = remote_entry(server.endpoint(), keys.server.string() + ".pub", stranger.string() + ".key");
  entry["on_failure"] = "abort";
  config["plugins"] = Json::array({entry});
  const std::string stranger_key = read_text(stranger.string() + ".pub").substr(0, 40);
  const auto began = Clock::now();
  try {
    train(config);
    FAIL() << "training began with a refused plugin";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("plugin 'caption_tag_shuffle'"), std::string::npos) << what;
    EXPECT_NE(what.find("refused this trainer's public key " + stranger_key), std::string::npos) << what;
    EXPECT_NE(what.find("--allow"), std::string::npos) << what;
  }
  EXPECT_LT(Clock::now() - began, std::chrono::seconds(5)) << "named within seconds";
}

// The server dies mid-run (SIGKILL, as a lost machine): the link's loss is a fault like a crash;
// the restart connects again, to the server started anew at the same address, and training
// finishes with the plugin.
TEST(RemoteHosts, AKilledServerIsNamedAndTheRestartReconnects) {
  const fs::path dir = scratch("killed");
  const Keys keys = make_both(dir);
  auto server = std::make_unique<Server>(dir, curve_args(keys));
  const std::string endpoint = server->endpoint();
  Json config = tiny_config(dir / "run", 3);
  Json entry = remote_entry(endpoint, keys.server.string() + ".pub", keys.trainer.string() + ".key");
  entry["on_failure"] = "skip";
  config["plugins"] = Json::array({entry});
  bool killed = false;
  const auto observer = [&](const std::string& hook, const Json& kwargs) -> std::vector<Json> {
    if (hook == "on_step_end" && kwargs.value("global_step", 0) == 20 && !killed) {
      killed = true;
      EXPECT_EQ(server->stop(SIGKILL), 128 + SIGKILL);
      server = std::make_unique<Server>(dir, curve_args(keys), endpoint);
    }
    return {};
  };
  ASSERT_EQ(train(config, std::nullopt, observer).outcome, RunOutcome::completed);
  ASSERT_TRUE(killed);
  const std::string log = read_text(dir / "run" / "train.log");
  EXPECT_NE(log.find("lost the connection to the remote host at " + endpoint), std::string::npos) << log;
  const Json report = plugin_report_of(dir / "run", "caption_tag_shuffle");
  EXPECT_GE(report["restarts"].get<int>(), 1) << report.dump(2);
  EXPECT_FALSE(report["quarantined"].get<bool>()) << report.dump(2);
  EXPECT_NE(server->output().find("started"), std::string::npos) << "the new server got the reconnection\n" << server->output();
}

// The plugin's host dies on its server (SIGKILL): the server says so, the fault is counted like a
// local crash, and the restart gets a new host from the same server.
TEST(RemoteHosts, AKilledRemoteHostIsNamedAndReplaced) {
  const fs::path dir = scratch("host-killed");
  const Keys keys = make_both(dir);
  Server server(dir, curve_args(keys));
  Json config = tiny_config(dir / "run", 3);
  Json entry = remote_entry(server.endpoint(), keys.server.string() + ".pub", keys.trainer.string() + ".key");
  entry["on_failure"] = "skip";
  config["plugins"] = Json::array({entry});
  bool killed = false;
  const auto observer = [&](const std::string& hook, const Json& kwargs) -> std::vector<Json> {
    if (hook == "on_step_end" && kwargs.value("global_step", 0) == 20 && !killed) {
      std::smatch found;
      const std::string output = server.output();
      if (std::regex_search(output, found, std::regex("host 1 for .* started \\(pid ([0-9]+)\\)")))
        killed = ::kill(std::stoi(found[1]), SIGKILL) == 0;
    }
    return {};
  };
  ASSERT_EQ(train(config, std::nullopt, observer).outcome, RunOutcome::completed);
  ASSERT_TRUE(killed) << server.output();
  const std::string log = read_text(dir / "run" / "train.log");
  // A crash either way: in a call, or between calls when the loader had made the epoch's captions already.
  const std::string death = "killed by signal 9 (Killed) (the remote host at " + server.endpoint() + ")";
  EXPECT_TRUE(log.find("crashed: " + death) != std::string::npos || log.find("crashed between calls: " + death) != std::string::npos)
      << log;
  const Json report = plugin_report_of(dir / "run", "caption_tag_shuffle");
  EXPECT_GE(report["restarts"].get<int>(), 1) << report.dump(2);
  EXPECT_NE(server.output().find("host 2 for"), std::string::npos) << server.output();
}

}  // namespace
}  // namespace bulkhead::testing
