// Ctrl-C: an "interrupted" checkpoint, plugins stopped, exit code 130.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

std::size_t lines_in(const fs::path& file) {
  std::ifstream in(file);
  std::size_t count = 0;
  for (std::string line; std::getline(in, line);) ++count;
  return count;
}

TEST(Interrupt, InProcessSavesAndSkipsTrainingEnd) {
  auto dir = scratch("run");
  std::vector<std::string> hooks;
  auto summary = train(tiny_config(dir, 3), std::nullopt, [&](const std::string& hook, const Json& kwargs) {
    hooks.push_back(hook);
    if (hook == "on_step_end" && kwargs["local_step"] == 2) request_interrupt();
    return std::vector<Json>{};
  });
  clear_interrupt();
  EXPECT_EQ(summary.outcome, RunOutcome::interrupted);
  EXPECT_EQ(summary.global_step, 3);
  EXPECT_NE(summary.last_checkpoint.filename().string().find("interrupted-"), std::string::npos);
  EXPECT_EQ(std::count(hooks.begin(), hooks.end(), "on_training_end"), 0) << "as in EveryDream2";
  EXPECT_EQ(hooks.back(), "on_checkpoint_saved");
}

TEST(Interrupt, CtrlCExits130WithACheckpoint) {
  auto dir = scratch("cmd");
  Json config = tiny_config(dir / "run", 200);
  std::ofstream(dir / "train.json") << config.dump();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    execl(BULKHEAD_EXE, BULKHEAD_EXE, "train", "--config", (dir / "train.json").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (lines_in(dir / "run" / "metrics.jsonl") < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  kill(child, SIGINT);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 130);
  auto latest = resolve_checkpoint_path(dir / "run");
  EXPECT_EQ(latest.filename().string().rfind("interrupted-", 0), 0u) << latest;
  EXPECT_EQ(Checkpoint(latest).info().reason, "interrupted");
}

}  // namespace
}  // namespace bulkhead::testing
