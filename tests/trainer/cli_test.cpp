// The command line as a user meets it: every mistake exits 2 with a message naming it, --version
// everywhere, and `bulkhead sample` with several prompts and seeds, PNG or JPEG.
#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

struct Result {
  int code;
  std::string output;
};

Result bulkhead(const std::vector<std::string>& args) {
  // One file per test: ctest runs these tests at the same time.
  auto out = fs::path(::testing::TempDir()) /
             ("bulkhead-cli-output-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + ".txt");
  const int code = run_bulkhead(args, out);
  return {code, read_text(out)};
}

TEST(Cli, EveryCommandLineErrorExits2) {
  auto typo = bulkhead({"trian"});
  EXPECT_EQ(typo.code, 2);
  EXPECT_NE(typo.output.find("unknown command 'trian' (did you mean 'train'?)"), std::string::npos) << typo.output;
  EXPECT_EQ(bulkhead({}).code, 2) << "no command";
  EXPECT_EQ(bulkhead({"train", "--max-epochs", "many"}).code, 2);
  EXPECT_EQ(bulkhead({"train", "--no-such-option"}).code, 2);
  EXPECT_EQ(bulkhead({"plugins", "check"}).code, 2) << "a missing argument";
  for (const char* steps : {"-3", "0"}) {
    auto result = bulkhead({"sample", "--checkpoint", "x", "--prompt", "p", "--out", "o.png", "--steps", steps});
    EXPECT_EQ(result.code, 2) << steps;
    EXPECT_NE(result.output.find("--steps"), std::string::npos) << result.output;
  }
  auto gif = bulkhead({"sample", "--checkpoint", "x", "--prompt", "p", "--out", "o.gif"});
  EXPECT_EQ(gif.code, 2);
  EXPECT_NE(gif.output.find("must end in .png, .jpg or .jpeg"), std::string::npos) << gif.output;
}

TEST(Cli, VersionEverywhere) {
  for (auto args : std::vector<std::vector<std::string>>{{"--version"}, {"train", "--version"}, {"sample", "--version"},
                                                         {"plugins", "list", "--version"}}) {
    auto result = bulkhead(args);
    EXPECT_EQ(result.code, 0) << args.front();
    EXPECT_EQ(result.output.rfind("bulkhead 0.", 0), 0u) << result.output;
    EXPECT_NE(result.output.find("LibTorch"), std::string::npos) << result.output;
  }
}

TEST(Cli, SampleSeveralPromptsAndSeedsAsPngOrJpeg) {
  auto dir = scratch("run");
  train(tiny_config(dir, 1));
  const std::string checkpoint = dir.string();
  auto jpeg = bulkhead({"sample", "--checkpoint", checkpoint, "--prompt", "a red circle", "--out",
                        (dir / "one.jpg").string(), "--steps", "2"});
  ASSERT_EQ(jpeg.code, 0) << jpeg.output;
  EXPECT_EQ(read_text(dir / "one.jpg").substr(0, 3), "\xFF\xD8\xFF") << "JPEG bytes for a .jpg name";

  auto many = bulkhead({"sample", "--checkpoint", checkpoint, "--prompt", "a red circle", "--prompt", "a blue square",
                        "--seed", "1", "--seed", "7", "--out", (dir / "grid.png").string(), "--steps", "2"});
  ASSERT_EQ(many.code, 0) << many.output;
  for (const char* name : {"grid.png", "grid-p00-s1.png", "grid-p00-s7.png", "grid-p01-s1.png", "grid-p01-s7.png"})
    EXPECT_EQ(read_text(dir / name).substr(1, 3), "PNG") << name;
  EXPECT_EQ(read_text(dir / "grid.txt"), "a red circle\na blue square\n");
  EXPECT_NE(read_text(dir / "grid-p00-s1.png"), read_text(dir / "grid-p00-s7.png")) << "seeds differ";
}

// Benchmark mode (bench_pace_ms, bench/overhead.py): no model compute, a fixed wait per step, while
// the loader, the plugins' transforms and every hook run as in training; each epoch's wall time is
// recorded in metrics.jsonl.
TEST(Cli, BenchPaceRunsTheLoaderAndEveryHookWithoutTheModel) {
  auto dir = scratch("paced");
  Json config = tiny_config(dir / "run", 2);
  config["plugins"] = {"hook_logger", "caption_tag_shuffle"};
  std::ofstream(dir / "train.json") << config.dump();
  auto run = bulkhead({"train", "--config", (dir / "train.json").string(), "--bench-pace-ms", "5"});
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_NE(run.output.find("benchmark mode (bench_pace_ms 5)"), std::string::npos) << run.output;

  const auto steps = read_metrics(dir / "run");
  ASSERT_EQ(steps.size(), 28u) << "2 epochs of 14 batches";
  for (auto& step : steps) EXPECT_EQ(step["loss"], 1.0) << "a paced step's placeholder loss: " << step.dump();
  const auto epochs = read_metrics(dir / "run", "epoch_s");
  ASSERT_EQ(epochs.size(), 2u);
  for (auto& epoch : epochs) EXPECT_GE(epoch["epoch_s"].get<double>(), 14 * 0.005) << "each step waited 5 ms";
  EXPECT_EQ(read_metrics(dir / "run", "val_loss").size(), 2u) << "validation runs, paced too";

  const Json report = read_json(dir / "run" / "plugin-report.json")["plugins"];
  ASSERT_EQ(report.size(), 2u) << report.dump(2);
  EXPECT_EQ(report[0]["hooks"]["on_step_end"]["calls"].get<long>(), 28) << report.dump(2);
  EXPECT_EQ(report[0]["hooks"]["on_epoch_end"]["ok"].get<long>(), 2) << report.dump(2);
  EXPECT_GT(report[1]["hooks"]["transform_captions"]["items"].get<long>(), 400) << "the loader's transforms ran";
  EXPECT_TRUE(fs::exists(dir / "run" / "checkpoints" / "latest.txt")) << "the final checkpoint is saved";
  EXPECT_TRUE(fs::is_empty(dir / "run" / "samples")) << "no sampling: that is the model's compute";
  const std::string log = read_text(dir / "run" / "train.log");
  EXPECT_NE(log.find("[plugin:hook_logger] [info] on_step_start"), std::string::npos) << log;
}

// A bare --plugins replaces the config's list with none (bench/overhead.py's run without plugins).
TEST(Cli, BarePluginsMeansNone) {
  auto dir = scratch("bare");
  Json config = tiny_config(dir / "run", 1);
  config["plugins"] = {"hook_logger"};
  std::ofstream(dir / "train.json") << config.dump();
  auto run = bulkhead({"train", "--config", (dir / "train.json").string(), "--bench-pace-ms", "1", "--plugins"});
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_EQ(read_json(dir / "run" / "plugin-report.json")["plugins"].size(), 0u) << run.output;
  EXPECT_EQ(read_json(dir / "run" / "config.json")["plugins"], Json::array());
}

TEST(Cli, BenchPaceMustNotBeNegative) {
  auto result = bulkhead({"train", "--bench-pace-ms", "-1"});
  EXPECT_EQ(result.code, 2) << result.output;
  EXPECT_NE(result.output.find("/bench_pace_ms"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace bulkhead::testing
