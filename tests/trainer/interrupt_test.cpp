// Ctrl-C, SIGTERM and SIGHUP: an "interrupted" checkpoint, plugins stopped, exit code 128 + the signal;
// SIGKILL: train.log keeps every line written before it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

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

// Starts `bulkhead train` on a long tiny run in dir/run, sends `signal` after 3 steps; returns the exit status.
int interrupt_after_three_steps(const fs::path& dir, int signal, int max_epochs = 200) {
  std::ofstream(dir / "train.json") << tiny_config(dir / "run", max_epochs).dump();
  const pid_t child = start_trainer(dir / "train.json", dir / "output.txt");
  EXPECT_TRUE(wait_until([&] { return lines_in(dir / "run" / "metrics.jsonl") >= 3; })) << read_text(dir / "output.txt");
  kill(child, signal);
  return wait_exit(child);
}

void expect_interrupted_checkpoint(const fs::path& run) {
  auto latest = resolve_checkpoint_path(run);
  EXPECT_EQ(latest.filename().string().rfind("interrupted-", 0), 0u) << latest;
  EXPECT_EQ(Checkpoint(latest).info().reason, "interrupted");
}

TEST(Interrupt, CtrlCExits130WithACheckpoint) {
  auto dir = scratch("cmd");
  EXPECT_EQ(interrupt_after_three_steps(dir, SIGINT), 130);
  expect_interrupted_checkpoint(dir / "run");
}

// What a closed SSH session sends: handled like Ctrl-C, with the shell's status for it.
TEST(Interrupt, SighupExits129WithACheckpointAndALogLine) {
  auto dir = scratch("cmd");
  EXPECT_EQ(interrupt_after_three_steps(dir, SIGHUP), 129);
  expect_interrupted_checkpoint(dir / "run");
  EXPECT_NE(read_text(dir / "run" / "train.log").find("interrupted by SIGHUP"), std::string::npos);
}

// What `docker stop` and Slurm send: an interrupted checkpoint that resumes exactly.
TEST(Interrupt, SigtermThenResumeEqualsAStraightRun) {
  auto dir = scratch("cmd"), straight = scratch("straight");
  EXPECT_EQ(interrupt_after_three_steps(dir, SIGTERM, 2), 143);
  expect_interrupted_checkpoint(dir / "run");
  EXPECT_NE(read_text(dir / "run" / "train.log").find("interrupted by SIGTERM"), std::string::npos);

  EXPECT_EQ(run_bulkhead({"train", "--resume", (dir / "run").string()}, dir / "resume.txt"), 0)
      << read_text(dir / "resume.txt");
  auto reference = train(tiny_config(straight, 2));
  EXPECT_TRUE(same_weights(reference.last_checkpoint, resolve_checkpoint_path(dir / "run")));
}

// train.log is written line by line: a line on the console is already in the file when the trainer is killed.
TEST(TrainLog, LineSurvivesSigkillRightAfterIt) {
  auto dir = scratch("cmd");
  std::ofstream(dir / "train.json") << tiny_config(dir / "run", 200).dump();
  const pid_t child = start_trainer(dir / "train.json", dir / "output.txt");
  const std::string line = "epoch 1/200: val_loss ";
  ASSERT_TRUE(wait_until([&] { return read_text(dir / "output.txt").find(line) != std::string::npos; }));
  kill(child, SIGKILL);
  EXPECT_EQ(wait_exit(child), 128 + SIGKILL);
  const std::string output = read_text(dir / "output.txt");
  const std::string message = output.substr(output.find(line), output.find('\n', output.find(line)) - output.find(line));
  EXPECT_NE(read_text(dir / "run" / "train.log").find(message), std::string::npos) << message;
}

}  // namespace
}  // namespace bulkhead::testing
