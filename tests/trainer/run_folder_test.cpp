// A run folder belongs to one run: a second trainer is refused while the first runs, a finished run
// is not overwritten or appended to, default folder names never collide.
#include <signal.h>

#include <ctime>
#include <map>

#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

// Every file under a folder (but the lock file), with its bytes.
std::map<std::string, std::string> snapshot(const fs::path& folder) {
  std::map<std::string, std::string> files;
  for (auto& entry : fs::recursive_directory_iterator(folder))
    if (entry.is_regular_file() && entry.path().filename() != ".lock")
      files[fs::relative(entry.path(), folder).string()] = read_text(entry.path());
  return files;
}

TEST(RunFolder, SecondTrainerIsRefusedWhileTheFirstRuns) {
  auto dir = scratch("cmd");
  std::ofstream(dir / "train.json") << tiny_config(dir / "run", 200).dump();
  const pid_t first = start_trainer(dir / "train.json", dir / "first.txt");
  ASSERT_TRUE(wait_until([&] { return lines_in(dir / "run" / "metrics.jsonl") >= 2; })) << read_text(dir / "first.txt");
  const std::string config_before = read_text(dir / "run" / "config.json");

  EXPECT_EQ(run_bulkhead({"train", "--config", (dir / "train.json").string()}, dir / "second.txt"), 2);
  const std::string refusal = read_text(dir / "second.txt");
  EXPECT_NE(refusal.find("is in use by another trainer (pid " + std::to_string(first) + ")"), std::string::npos)
      << refusal;

  kill(first, SIGINT);
  EXPECT_EQ(wait_exit(first), 130);
  EXPECT_EQ(read_text(dir / "run" / "config.json"), config_before);
  auto steps = read_metrics(dir / "run");
  for (std::size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i]["step"], i) << "one run's steps, once each";
}

TEST(RunFolder, FinishedRunIsNotOverwrittenUnlessAsked) {
  auto dir = scratch("cmd");
  std::ofstream(dir / "train.json") << tiny_config(dir / "run", 1).dump();
  ASSERT_EQ(run_bulkhead({"train", "--config", (dir / "train.json").string()}, dir / "first.txt"), 0);
  const auto before = snapshot(dir / "run");

  EXPECT_EQ(run_bulkhead({"train", "--config", (dir / "train.json").string()}, dir / "again.txt"), 2);
  const std::string refusal = read_text(dir / "again.txt");
  EXPECT_NE(refusal.find("already holds a run"), std::string::npos) << refusal;
  EXPECT_NE(refusal.find("--resume " + (dir / "run").string()), std::string::npos) << refusal;
  EXPECT_EQ(snapshot(dir / "run"), before) << "every byte of the earlier run is kept";

  ASSERT_EQ(run_bulkhead({"train", "--config", (dir / "train.json").string(), "--overwrite"}, dir / "over.txt"), 0)
      << read_text(dir / "over.txt");
  EXPECT_EQ(read_metrics(dir / "run").size(), 14u) << "the earlier run's metrics were deleted, not appended to";
}

// A start that failed on its data (nothing trained) does not make the folder "hold a run".
TEST(RunFolder, FailedStartDoesNotBlockTheNextOne) {
  auto dir = scratch("cmd"), empty = scratch("empty");
  std::ofstream(dir / "train.json") << tiny_config(dir / "run", 1).dump();
  EXPECT_EQ(run_bulkhead({"train", "--config", (dir / "train.json").string(), "--data-root", empty.string()},
                         dir / "failed.txt"),
            2);
  EXPECT_TRUE(fs::exists(dir / "run" / "train.log")) << "the failure is in the run's log";
  EXPECT_EQ(run_bulkhead({"train", "--config", (dir / "train.json").string()}, dir / "fixed.txt"), 0)
      << read_text(dir / "fixed.txt");
}

std::string folder_name(const std::string& project, std::time_t when) {
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", std::localtime(&when));
  return project + "-" + text;
}

// Two runs started in the same second with the same project_name: the second gets its own folder.
TEST(RunFolder, DefaultNamesNeverCollide) {
  auto dir = scratch("cmd");
  Json config = tiny_config("", 1);
  config.erase("run_dir");
  config["logdir"] = (dir / "runs").string();
  config["project_name"] = "mine";
  std::ofstream(dir / "train.json") << config.dump();
  // Earlier runs under every name the next seconds give.
  const std::time_t now = std::time(nullptr);
  for (int s = 0; s < 30; ++s) {
    fs::create_directories(dir / "runs" / folder_name("mine", now + s));
    std::ofstream(dir / "runs" / folder_name("mine", now + s) / "config.json") << "earlier";
  }
  ASSERT_EQ(run_bulkhead({"train", "--config", (dir / "train.json").string()}, dir / "output.txt"), 0)
      << read_text(dir / "output.txt");
  int runs = 0;
  for (auto& entry : fs::directory_iterator(dir / "runs")) {
    if (read_text(entry.path() / "config.json") == "earlier") continue;
    ++runs;
    EXPECT_EQ(entry.path().filename().string().substr(entry.path().filename().string().size() - 2), "-2");
  }
  EXPECT_EQ(runs, 1);
}

// A crash mid-save leaves a .tmp file; the next start in that folder removes it and says so.
TEST(RunFolder, ResumeRemovesStaleTemporaryFiles) {
  auto dir = scratch("run");
  train(tiny_config(dir, 1));
  std::ofstream(dir / "checkpoints" / "epoch-ep0001-gs000014.pt.tmp") << "half a checkpoint";
  auto config = tiny_config(dir, 2);
  train(config, resolve_checkpoint_path(dir));
  EXPECT_FALSE(fs::exists(dir / "checkpoints" / "epoch-ep0001-gs000014.pt.tmp"));
  EXPECT_NE(read_text(dir / "train.log").find("a temporary file left by an earlier crash"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::testing
