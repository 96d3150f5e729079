// Data-parallel training (bulkhead train --nproc, docs/training.md): real ranks, real Gloo, on the
// CPU. Two ranks follow the one-process run of the same global batch; plugins behave as the docs
// say on every rank; a killed rank restarts the run from its checkpoint; a stop signal stops all.
#include <csignal>

#include "support/proc.hpp"
#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

// 427 training shapes in batches of 16: 27 steps per epoch, 1 thread a rank.
Json dp_config(const fs::path& run_dir, int max_epochs) {
  Json config = tiny_config(run_dir, max_epochs);
  config["batch_size"] = 16;
  config["num_workers"] = 1;
  return config;
}

struct Run {
  int code;
  std::string output;
};

Run train_with(const fs::path& dir, const Json& config, std::vector<std::string> extra) {
  std::ofstream(dir / "train.json") << config.dump();
  std::vector<std::string> args = {"train", "--config", (dir / "train.json").string()};
  args.insert(args.end(), extra.begin(), extra.end());
  const int code = run_bulkhead(args, dir / "output.txt");
  return {code, read_text(dir / "output.txt")};
}

std::size_t count(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// Processes whose command line names this run folder (ranks, plugin hosts): none once a run is over.
int processes_of(const fs::path& run_dir) {
  int found = 0;
  for (pid_t pid : proc_pids()) {
    std::string cmdline = read_proc_file("/proc/" + std::to_string(pid) + "/cmdline").value_or("");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(run_dir.string() + " ") != std::string::npos) ++found;
  }
  return found;
}

TEST(DataParallel, TwoRanksFollowTheOneProcessRunOfTheSameBatch) {
  auto dir = scratch("follow");
  fs::create_directories(dir / "one");
  fs::create_directories(dir / "two");
  auto one = train_with(dir / "one", dp_config(dir / "one" / "run", 2), {});
  ASSERT_EQ(one.code, 0) << one.output;
  auto two = train_with(dir / "two", dp_config(dir / "two" / "run", 2), {"--nproc", "2"});
  ASSERT_EQ(two.code, 0) << two.output;
  EXPECT_NE(two.output.find("data parallel: 2 ranks on Gloo, each batch of 16 split 8 + 8"), std::string::npos) << two.output;

  const auto a = read_metrics(dir / "one" / "run"), b = read_metrics(dir / "two" / "run");
  ASSERT_EQ(a.size(), 54u);
  ASSERT_EQ(b.size(), a.size()) << "metrics.jsonl written once, by rank 0";
  // The same samples and noise per step: the first steps agree to float rounding (the ranks sum
  // their halves in another order); later ones drift as rounding compounds, and stay close.
  for (std::size_t i = 0; i < 5; ++i)
    EXPECT_NEAR(b[i]["loss"].get<double>(), a[i]["loss"].get<double>(), 1e-5 * a[i]["loss"].get<double>()) << "step " << i;
  const auto va = read_metrics(dir / "one" / "run", "val_loss"), vb = read_metrics(dir / "two" / "run", "val_loss");
  ASSERT_EQ(va.size(), 2u);
  ASSERT_EQ(vb.size(), 2u);
  EXPECT_NEAR(vb[1]["val_loss"].get<double>(), va[1]["val_loss"].get<double>(), 0.05 * va[1]["val_loss"].get<double>());
  EXPECT_LT(vb[1]["val_loss"].get<double>(), vb[0]["val_loss"].get<double>()) << "it learns";

  // One run folder: rank 0's checkpoint and curves; rank 1's log in ranks/rank-1.
  EXPECT_TRUE(fs::exists(dir / "two" / "run" / "checkpoints" / "final-ep0002-gs000054.pt"));
  EXPECT_TRUE(fs::exists(dir / "two" / "run" / "ranks" / "rank-1" / "train.log"));
  EXPECT_FALSE(fs::exists(dir / "two" / "run" / "ranks" / "rank-1" / "metrics.jsonl"));
  EXPECT_NE(read_text(dir / "two" / "run" / "ranks" / "rank-1" / "train.log").find("rank 1 done after 54 steps"),
            std::string::npos);

  // A resumed run may have another number of ranks: one process continues the two ranks' run.
  Json more = dp_config(dir / "two" / "run", 3);
  auto resumed = train_with(dir / "two", more, {"--resume", (dir / "two" / "run").string()});
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_EQ(read_metrics(dir / "two" / "run").size(), 54u + 27u);
}

// The plugin table of docs/training.md: observer hooks once, on rank 0, with rank and world_size;
// transforms on every rank, each with a seed of its own; a grad_accum and a stop asked on rank 0
// followed by every rank at the same step.
TEST(DataParallel, PluginsBehaveOnEveryRankAsDocumented) {
  auto dir = scratch("plugins");
  Json config = dp_config(dir / "run", 3);
  config["plugins"] = {{{"name", test_plugin("rank-probe").string()},
                        {"options", {{"grad_accum_at_step", 3}, {"stop_at_step", 40}}}}};
  auto run = train_with(dir, config, {"--nproc", "2"});
  ASSERT_EQ(run.code, 0) << run.output;
  const std::string rank0 = read_text(dir / "run" / "train.log");
  const std::string rank1 = read_text(dir / "run" / "ranks" / "rank-1" / "train.log");

  EXPECT_EQ(count(rank0, "observer on_training_start on host rank 0, kwargs rank 0 of 2"), 1u) << rank0;
  EXPECT_EQ(count(rank0, "observer on_epoch_end on host rank 0"), 1u) << "stopped in the second epoch\n" << rank0;
  EXPECT_EQ(count(rank1, "observer "), 0u) << rank1;
  EXPECT_NE(rank0.find("transform_caption on host rank 0"), std::string::npos) << rank0;
  EXPECT_NE(rank1.find("transform_caption on host rank 1"), std::string::npos) << rank1;
  const auto seed_of = [](const std::string& log) {
    const auto at = log.find("seed ");
    return at == std::string::npos ? std::string() : log.substr(at, log.find('\n', at) - at);
  };
  EXPECT_NE(seed_of(rank0), seed_of(rank1)) << "each rank's plugin has a seed of its own";

  // grad_accum 2 from the second epoch, on both ranks (or their gradient reductions would not
  // match); the stop at step 40 ends both in the same step.
  const auto steps = read_metrics(dir / "run");
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps.front()["grad_accum"], 1);
  EXPECT_EQ(steps.back()["grad_accum"], 2);
  const auto last = steps.back()["step"].get<int>();
  EXPECT_GE(last, 40);
  EXPECT_LE(last, 42) << "stopped at the optimizer step after the request";
  EXPECT_NE(rank1.find("rank 1 done after " + std::to_string(last + 1) + " steps"), std::string::npos) << rank1;
}

// A plugin's state lives per rank: its host crashed on rank 1 comes back with rank 1's count.
TEST(DataParallel, APluginCrashedOnOneRankGetsThatRanksStateBack) {
  auto dir = scratch("state");
  Json config = dp_config(dir / "run", 2);
  config["plugins"] = {{{"name", test_plugin("rank-probe").string()},
                        {"options", {{"crash_on_rank", 1}, {"crash_after_transforms", 150}}}}};
  auto run = train_with(dir, config, {"--nproc", "2"});
  ASSERT_EQ(run.code, 0) << run.output;
  const std::string rank0 = read_text(dir / "run" / "train.log");
  const std::string rank1 = read_text(dir / "run" / "ranks" / "rank-1" / "train.log");
  EXPECT_EQ(count(rank0, "state back on host rank"), 0u) << "rank 0's host never crashed\n" << rank0;
  const auto at = rank1.find("state back on host rank 1: ");
  ASSERT_NE(at, std::string::npos) << rank1;
  EXPECT_GT(std::stoi(rank1.substr(at + 27)), 100) << "rank 1's own count (8 captions a step), not none" << rank1;
  EXPECT_NE(rank1.find("crashed"), std::string::npos) << rank1;
}

// Model access runs on rank 0; what on_model_load did (a new token, a grown embedding, frozen
// rows) reaches rank 1 with rank 0's model, or their collectives would not even match in size.
TEST(DataParallel, ModelAccessOnRankZeroReachesEveryRank) {
  auto dir = scratch("model");
  Json config = dp_config(dir / "run", 1);
  config["plugins"] = {{{"name", "textual_inversion"},
                        {"grant", {{"model_access", {{"caption.words.weight", {"read", "write"}}}}}}}};
  auto run = train_with(dir, config, {"--nproc", "2"});
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_NE(run.output.find("textual_inversion: added token \"zorblax\""), std::string::npos) << run.output;
  const fs::path final_checkpoint = resolve_checkpoint_path(dir / "run");
  EXPECT_TRUE(Checkpoint(final_checkpoint).info().vocab.to_json().dump().find("zorblax") != std::string::npos);
  EXPECT_TRUE(fs::exists(final_checkpoint.string() + ".files/textual_inversion/textual_inversions/zorblax.bin"));
  const std::string rank1 = read_text(dir / "run" / "ranks" / "rank-1" / "train.log");
  EXPECT_NE(rank1.find("textual_inversion: its hooks run on rank 0 only"), std::string::npos) << rank1;
  EXPECT_NE(rank1.find("rank 1 done after 27 steps"), std::string::npos) << rank1;
}

TEST(DataParallel, AKilledRankRestartsEveryRankFromTheLastCheckpoint) {
  auto dir = scratch("killed");
  Json config = dp_config(dir / "run", 24);
  config["save_every_n_epochs"] = 2;
  std::ofstream(dir / "train.json") << config.dump();
  const pid_t launcher = start_bulkhead({"train", "--config", (dir / "train.json").string(), "--nproc", "2"}, dir / "output.txt");
  ASSERT_TRUE(wait_until([&] { return fs::exists(dir / "run" / "checkpoints" / "epoch-ep0002-gs000054.pt"); }))
      << read_text(dir / "output.txt");
  const std::string log = read_text(dir / "output.txt");
  const auto at = log.find("rank 1 of 2: pid ");
  ASSERT_NE(at, std::string::npos) << log;
  const pid_t rank1 = std::stoi(log.substr(at + 17));
  ASSERT_EQ(::kill(rank1, SIGKILL), 0);

  EXPECT_EQ(wait_exit(launcher), 0) << read_text(dir / "output.txt");
  const std::string output = read_text(dir / "output.txt");
  EXPECT_NE(output.find("rank 1 (pid " + std::to_string(rank1) + ") was killed by signal 9 (SIGKILL): stopping the other ranks"),
            std::string::npos) << output;
  EXPECT_NE(output.find("rank 0 lost the other ranks"), std::string::npos) << output;
  EXPECT_NE(output.find("restarting all 2 ranks from the last checkpoint"), std::string::npos) << output;
  EXPECT_NE(output.find("resumed from " + (dir / "run" / "checkpoints" / "epoch-ep00").string()), std::string::npos) << output;
  EXPECT_TRUE(fs::exists(dir / "run" / "checkpoints" / "final-ep0024-gs000648.pt")) << output;
  EXPECT_EQ(count(output, "checkpoint (errored)"), 0u) << "a rank that lost its peers saves nothing";
  EXPECT_EQ(processes_of(dir / "run"), 0);
}

TEST(DataParallel, SigtermStopsEveryRankAndLeavesNoProcess) {
  auto dir = scratch("sigterm");
  Json config = dp_config(dir / "run", 20);
  config["plugins"] = {"caption_tag_shuffle"};
  std::ofstream(dir / "train.json") << config.dump();
  const pid_t launcher = start_bulkhead({"train", "--config", (dir / "train.json").string(), "--nproc", "2"}, dir / "output.txt");
  ASSERT_TRUE(wait_until([&] { return read_metrics(dir / "run").size() >= 3; })) << read_text(dir / "output.txt");
  ::kill(launcher, SIGTERM);
  EXPECT_EQ(wait_exit(launcher), 143) << read_text(dir / "output.txt");
  const std::string output = read_text(dir / "output.txt");
  EXPECT_NE(output.find("interrupted by SIGTERM: saving a checkpoint"), std::string::npos) << output;
  bool saved = false;
  for (const auto& entry : fs::directory_iterator(dir / "run" / "checkpoints"))
    saved = saved || entry.path().filename().string().rfind("interrupted-", 0) == 0;
  EXPECT_TRUE(saved) << output;
  EXPECT_EQ(processes_of(dir / "run"), 0);
}

// Two machines, here both on loopback: each runs the launcher with its --node-rank.
TEST(DataParallel, TwoMachinesMeetThroughTheTcpStore) {
  auto dir = scratch("nodes");
  for (int node = 0; node < 2; ++node) {
    fs::create_directories(dir / std::to_string(node));
    std::ofstream(dir / std::to_string(node) / "train.json") << dp_config(dir / std::to_string(node) / "run", 1).dump();
  }
  const std::string port = std::to_string(29500 + ::getpid() % 2000);
  auto node = [&](int rank) {
    const fs::path here = dir / std::to_string(rank);
    return start_bulkhead({"train", "--config", (here / "train.json").string(), "--nnodes", "2", "--node-rank",
                           std::to_string(rank), "--master-addr", "127.0.0.1", "--master-port", port},
                          here / "output.txt");
  };
  const pid_t first = node(0), second = node(1);
  EXPECT_EQ(wait_exit(first), 0) << read_text(dir / "0" / "output.txt");
  EXPECT_EQ(wait_exit(second), 0) << read_text(dir / "1" / "output.txt");
  EXPECT_NE(read_text(dir / "0" / "output.txt").find("has no authentication"), std::string::npos);
  EXPECT_EQ(read_metrics(dir / "0" / "run").size(), 27u);
  EXPECT_FALSE(fs::exists(dir / "1" / "run" / "metrics.jsonl")) << "machine 1 only trains; rank 0 writes the run";
  EXPECT_TRUE(fs::exists(dir / "1" / "run" / "ranks" / "rank-1" / "train.log"));
}

}  // namespace
}  // namespace bulkhead::testing
