// Studies through the real program: `bulkhead study` with a real method plugin (tests/plugins/method-python)
// training every trial on the built-in shapes, and each way a method or a trial can go wrong.
#include <signal.h>
#include <stdlib.h>

#include <cmath>
#include <deque>
#include <set>

#include <fmt/format.h>

#include <stb/stb_image.h>

#include "study/search.hpp"
#include "tensorboard_reader.hpp"
#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

struct Result {
  int code;
  std::string output;
};

Result bulkhead(const std::vector<std::string>& args, const fs::path& dir) {
  const int code = run_bulkhead(args, dir / "output.txt");
  return {code, read_text(dir / "output.txt")};
}

// One epoch of tiny runs, no per-epoch checkpoints: a trial takes a few seconds on one core.
Json study_config(const fs::path& dir, const Json& describe, const Json& method_options = Json::object()) {
  Json config = tiny_config(dir / "study", 1);
  Json options = method_options;
  options["describe"] = describe;
  config["method"] = {{"name", test_plugin("method-python").string()}, {"options", options}};
  return config;
}

fs::path write_config(const fs::path& dir, const Json& config) {
  std::ofstream(dir / "train.json") << config.dump(2);
  return dir / "train.json";
}

Result study(const fs::path& dir, const Json& config, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"study", "--config", write_config(dir, config).string()};
  args.insert(args.end(), extra.begin(), extra.end());
  return bulkhead(args, dir);
}

std::vector<fs::path> files_in(const fs::path& folder, const std::string& extension) {
  std::vector<fs::path> found;
  if (!fs::is_directory(folder)) return found;
  for (auto& entry : fs::directory_iterator(folder))
    if (entry.path().extension() == extension) found.push_back(entry.path());
  return found;
}

const Json kGrid = {{"search_space", {{"lr", {0.001, 0.004}}, {"batch_size", {32, 64}}}},
                    {"accumulators", {{{"metric", "loss"}, {"mean", true}, {"sliding_window", 3}, {"min", true}, {"max", true}}}},
                    {"main_metric", "val_loss"}};

TEST(StudySearch, GridVisitsEveryPointOnceTheLastKeyFastest) {
  const Json space = {{"batch_size", {16, 32}}, {"lr", {0.001, 0.002, 0.003}}};
  EXPECT_EQ(grid_point(space, 0), Json({{"batch_size", 16}, {"lr", 0.001}}));
  EXPECT_EQ(grid_point(space, 1), Json({{"batch_size", 16}, {"lr", 0.002}}));
  EXPECT_EQ(grid_point(space, 3), Json({{"batch_size", 32}, {"lr", 0.001}}));
  std::set<std::string> seen;
  for (std::size_t i = 0; i < 6; ++i) seen.insert(grid_point(space, i).dump());
  EXPECT_EQ(seen.size(), 6u);
}

TEST(StudySearch, RandomDrawsDependOnSeedAndTrialOnlyAndStayInTheSpace) {
  const Json space = {{"lr", {{"min", 1e-4}, {"max", 1e-2}, {"log", true}}},
                      {"grad_accum", {{"min", 1}, {"max", 4}, {"integer", true}}},
                      {"lr_scheduler", {"cosine", "constant"}}};
  EXPECT_EQ(random_point(space, 7, 3), random_point(space, 7, 3)) << "a resumed study draws trial 3 alike";
  EXPECT_NE(random_point(space, 7, 3), random_point(space, 7, 4));
  EXPECT_NE(random_point(space, 7, 3), random_point(space, 8, 3));
  for (std::size_t trial = 0; trial < 200; ++trial) {
    const Json p = random_point(space, 1, trial);
    EXPECT_EQ(outside_space(space, p), "") << p.dump();
    EXPECT_TRUE(p["grad_accum"].is_number_integer()) << p.dump();
  }
}

TEST(StudySearch, OutsideSpaceSaysWhatIsWrong) {
  const Json space = {{"lr", {{"min", 0.001}, {"max", 0.01}}}, {"batch_size", {16, 32}}};
  EXPECT_EQ(outside_space(space, {{"lr", 0.002}, {"batch_size", 16}}), "");
  EXPECT_EQ(outside_space(space, {{"lr", 0.002}}), "\"batch_size\" is missing");
  EXPECT_EQ(outside_space(space, {{"lr", 0.002}, {"batch_size", 16}, {"data_root", "/"}}), "\"data_root\" is not in the search space");
  EXPECT_EQ(outside_space(space, {{"lr", 0.5}, {"batch_size", 16}}), "lr 0.5 is outside [0.001, 0.01]");
  EXPECT_EQ(outside_space(space, {{"lr", 0.002}, {"batch_size", 24}}), "batch_size 24 is not one of [16,32]");
  EXPECT_EQ(outside_space(space, Json::array()), "params is array, not an object");
}

TEST(Study, TwoByTwoGridKeepsTheLowestValLossTrialAndSampleUsesIt) {
  auto dir = scratch("grid");
  auto result = study(dir, study_config(dir, kGrid));
  ASSERT_EQ(result.code, 0) << result.output;
  const fs::path out = dir / "study";
  const Json record = read_json(out / "study.json");
  ASSERT_EQ(record["trials"].size(), 4u) << record.dump(2);
  EXPECT_EQ(record["status"], "done");
  int best = -1;
  double best_score = INFINITY;
  std::set<std::string> combinations;
  for (const auto& trial : record["trials"]) {
    EXPECT_EQ(trial["status"], "ok") << trial.dump();
    combinations.insert(trial["params"].dump());
    const double val_loss = read_metrics(out / "trials" / fmt::format("{:03d}", trial["trial"].get<int>()), "val_loss")
                                .back()["val_loss"];
    EXPECT_EQ(trial["score"].get<double>(), val_loss) << "the score is the trial's last val_loss";
    if (val_loss < best_score) best_score = val_loss, best = trial["trial"];
  }
  EXPECT_EQ(combinations.size(), 4u) << "every grid point once";
  EXPECT_EQ(record["best_trial"], best);
  EXPECT_EQ(read_json(out / "best" / "trial.json")["trial"], best);
  ASSERT_EQ(files_in(out / "best" / "checkpoints", ".pt").size(), 1u);
  for (int n = 0; n < 4; ++n)
    EXPECT_TRUE(files_in(out / "trials" / fmt::format("{:03d}", n) / "checkpoints", ".pt").empty())
        << "keep best: the trials' checkpoints go once best/ holds its copy";
  EXPECT_NE(result.output.find("* best: trial"), std::string::npos) << "the summary table\n" << result.output;

  auto sample = bulkhead({"sample", "--checkpoint", (out / "best").string(), "--prompt", "a red circle", "--out",
                          (dir / "best.png").string(), "--steps", "2"}, dir);
  EXPECT_EQ(sample.code, 0) << sample.output;
  int width = 0, height = 0, channels = 0;
  EXPECT_TRUE(stbi_info((out / "study.png").c_str(), &width, &height, &channels)) << "the main metric per trial";

  // Accumulators, by hand, from trial 0's losses.
  std::vector<double> losses;
  for (const auto& r : read_metrics(out / "trials" / "000")) losses.push_back(r["loss"]);
  ASSERT_GE(losses.size(), 3u);
  double sum = 0;
  for (double l : losses) sum += l;
  const double sliding = (losses[losses.size() - 1] + losses[losses.size() - 2] + losses[losses.size() - 3]) / 3;
  const Json& metrics = record["trials"][0]["metrics"];
  EXPECT_DOUBLE_EQ(metrics["mean_loss"].get<double>(), sum / double(losses.size()));
  EXPECT_DOUBLE_EQ(metrics["sliding_loss"].get<double>(), sliding);
  EXPECT_DOUBLE_EQ(metrics["min_loss"].get<double>(), *std::min_element(losses.begin(), losses.end()));
  EXPECT_DOUBLE_EQ(metrics["max_loss"].get<double>(), *std::max_element(losses.begin(), losses.end()));
  EXPECT_DOUBLE_EQ(metrics["loss"].get<double>(), losses.back()) << "raw metrics are always recorded";
  EXPECT_TRUE(metrics.contains("samples_per_s")) << "a metric no accumulator names is still recorded";

  // TensorBoard: each trial a run of its own (the trainer's curves and the accumulators), and the study's curve.
  std::map<std::string, std::vector<float>> trial0;
  for (auto& file : fs::directory_iterator(out / "trials" / "000" / "tensorboard"))
    for (auto& [tag, values] : read_events(file.path()).scalars) trial0[tag].insert(trial0[tag].end(), values.begin(), values.end());
  EXPECT_EQ(trial0["loss"].size(), losses.size());
  ASSERT_EQ(trial0["accumulated/mean_loss"].size(), losses.size());
  EXPECT_FLOAT_EQ(trial0["accumulated/mean_loss"].back(), float(sum / double(losses.size())));
  const auto study_events = files_in(out / "tensorboard", "");
  std::vector<float> scores;
  for (auto& file : fs::directory_iterator(out / "tensorboard")) {
    auto values = read_events(file.path()).scalars["study/val_loss"];
    scores.insert(scores.end(), values.begin(), values.end());
  }
  EXPECT_GE(scores.size(), 4u) << "one point per trial (written again as the study goes)";
}

TEST(Study, ADivergedTrialFailsAndIsNeverBest) {
  auto dir = scratch("nan");
  // AdamW's decoupled decay multiplies each weight by (1 - lr * weight_decay) per step: -3e6 overflows in a few steps.
  const Json describe = {{"search_space", {{"weight_decay", {1e9, 0.01}}}}, {"main_metric", "val_loss"}};
  auto result = study(dir, study_config(dir, describe));
  ASSERT_EQ(result.code, 0) << result.output;
  const Json record = read_json(dir / "study" / "study.json");
  ASSERT_EQ(record["trials"].size(), 2u);
  EXPECT_EQ(record["trials"][0]["status"], "failed") << record.dump(2);
  EXPECT_TRUE(record["trials"][0]["score"].is_null());
  EXPECT_NE(record["trials"][0]["error"].get<std::string>().find("diverged"), std::string::npos) << record.dump(2);
  EXPECT_EQ(record["trials"][1]["status"], "ok");
  EXPECT_EQ(record["best_trial"], 1);
}

TEST(Study, CrashingSuggestTrialFallsBackToSeededRandomSearch) {
  auto dir = scratch("suggest");
  const Json describe = {{"search_space", {{"lr", {{"min", 0.001}, {"max", 0.004}, {"log", true}}}}},
                         {"algorithm", "plugin"}, {"max_evals", 2}, {"main_metric", "val_loss"}};
  auto result = study(dir, study_config(dir, describe, {{"suggest", "crash"}}));
  ASSERT_EQ(result.code, 0) << result.output;
  const Json record = read_json(dir / "study" / "study.json");
  ASSERT_EQ(record["trials"].size(), 2u);
  for (const auto& trial : record["trials"]) {
    EXPECT_EQ(trial["status"], "ok");
    const double lr = trial["params"]["lr"];
    EXPECT_TRUE(lr >= 0.001 && lr <= 0.004) << lr;
  }
  EXPECT_EQ(record["suggestion_faults"], 2) << record.dump(2);
  EXPECT_GE(record["method_faults"].get<int>(), 2);
  EXPECT_NE(result.output.find("drawn at random"), std::string::npos) << result.output;
  EXPECT_NE(read_text(dir / "study" / "study.log").find("suggest_trial"), std::string::npos);
}

TEST(Study, NonsenseSuggestionIsAFaultToo) {
  auto dir = scratch("nonsense");
  const Json describe = {{"search_space", {{"lr", {0.002, 0.003}}}}, {"algorithm", "plugin"}, {"max_evals", 1},
                         {"main_metric", "val_loss"}};
  auto result = study(dir, study_config(dir, describe, {{"suggest", "nonsense"}}));
  ASSERT_EQ(result.code, 0) << result.output;
  const Json record = read_json(dir / "study" / "study.json");
  EXPECT_EQ(record["suggestion_faults"], 1);
  EXPECT_NE(result.output.find("\"data_root\" is not in the search space"), std::string::npos) << result.output;
}

TEST(Study, AbortedTrialsFailAndAStudyWithoutABestExits1) {
  auto dir = scratch("abort");
  const Json describe = {{"search_space", {{"lr", {0.002, 0.003}}}}, {"main_metric", "val_loss"}};
  Json config = study_config(dir, describe);
  // Every trial's own plugin fails in on_epoch_end and is set to abort its training.
  config["plugins"] = {{{"name", test_plugin("fault").string()},
                        {"on_failure", "abort"},
                        {"options", {{"fault", "throw"}, {"hooks", {"on_epoch_end"}}}}}};
  auto result = study(dir, config);
  EXPECT_EQ(result.code, 1) << result.output;
  const Json record = read_json(dir / "study" / "study.json");
  ASSERT_EQ(record["trials"].size(), 2u);
  for (const auto& trial : record["trials"]) {
    EXPECT_EQ(trial["status"], "failed");
    EXPECT_NE(trial["error"].get<std::string>().find("on_failure: abort"), std::string::npos) << trial.dump();
  }
  EXPECT_TRUE(record["best_trial"].is_null());
  EXPECT_FALSE(fs::exists(dir / "study" / "best"));
  EXPECT_NE(result.output.find("no trial succeeded: no best model"), std::string::npos) << result.output;
}

TEST(Study, HangingSuggestTrialMissesItsDeadlineAndFallsBack) {
  auto dir = scratch("hang");
  const Json describe = {{"search_space", {{"lr", {0.002, 0.003}}}}, {"algorithm", "plugin"}, {"max_evals", 1},
                         {"main_metric", "val_loss"}};
  Json config = study_config(dir, describe, {{"suggest", "hang"}});
  config["method"]["timeout_ms"] = 1500;
  auto result = study(dir, config);
  ASSERT_EQ(result.code, 0) << result.output;
  const Json record = read_json(dir / "study" / "study.json");
  EXPECT_EQ(record["suggestion_faults"], 1);
  EXPECT_EQ(record["trials"][0]["status"], "ok");
  EXPECT_NE(result.output.find("missed its deadline of 1500 ms"), std::string::npos) << result.output;
}

TEST(Study, BadDescribeMethodStopsBeforeTrainingNamingTheField) {
  struct Case {
    Json describe;
    std::string named;
  };
  const std::vector<Case> cases = {
      {{{"search_space", {{"data_root", {"/etc"}}}}, {"main_metric", "val_loss"}}, "search_space.data_root"},
      {{{"settings", {{"device", "cuda"}}}, {"search_space", {{"lr", {0.001}}}}, {"main_metric", "val_loss"}}, "settings.device"},
      {{{"search_space", {{"lr", {0.001}}}}, {"main_metric", "val_los"}}, "main_metric: no trial logs \"val_los\""},
      {{{"search_space", {{"lr", Json::array()}}}, {"main_metric", "val_loss"}}, "/search_space/lr"},
      {{{"search_space", {{"batch_size", {0}}}}, {"main_metric", "val_loss"}}, "search_space.batch_size: the value 0"},
  };
  for (const auto& c : cases) {
    auto dir = scratch("bad");
    auto result = study(dir, study_config(dir, c.describe));
    EXPECT_EQ(result.code, 2) << c.describe.dump() << "\n" << result.output;
    EXPECT_NE(result.output.find(c.named), std::string::npos) << c.named << "\n" << result.output;
    EXPECT_TRUE(files_in(dir / "study" / "trials", "").empty()) << "nothing trained";
  }
}

TEST(Study, SigkillMidStudyThenResumeRunsNoFinishedTrialAgain) {
  auto dir = scratch("resume");
  const Json describe = {{"search_space", {{"lr", {0.001, 0.002, 0.003}}}}, {"main_metric", "val_loss"}};
  Json config = study_config(dir, describe);
  config["max_epochs"] = 2;
  const pid_t child = start_bulkhead({"study", "--config", write_config(dir, config).string()}, dir / "first.txt");
  const fs::path out = dir / "study";
  // Once trial 0 is finished and trial 1 has trained a step, kill everything at once.
  ASSERT_TRUE(wait_until([&] { return fs::exists(out / "trials" / "001" / "metrics.jsonl") &&
                                      lines_in(out / "trials" / "001" / "metrics.jsonl") > 0; }))
      << read_text(dir / "first.txt");
  kill(child, SIGKILL);
  wait_exit(child);
  const Json before = read_json(out / "study.json");
  ASSERT_EQ(before["trials"][0]["status"], "ok") << before.dump(2);
  const auto trial0_log = read_text(out / "trials" / "000" / "train.log");

  auto resumed = bulkhead({"study", "--resume", out.string()}, dir);
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  const Json after = read_json(out / "study.json");
  ASSERT_EQ(after["trials"].size(), 3u);
  for (const auto& trial : after["trials"]) EXPECT_EQ(trial["status"], "ok");
  EXPECT_EQ(after["trials"][0], before["trials"][0]) << "trial 0 was not run again";
  EXPECT_EQ(read_text(out / "trials" / "000" / "train.log"), trial0_log);
  EXPECT_NE(resumed.output.find("resuming: 1 trial(s) finished"), std::string::npos) << resumed.output;
}

TEST(Study, CtrlCStopsTheStudyCleanlyAndResumeFinishesIt) {
  auto dir = scratch("sigint");
  const Json describe = {{"search_space", {{"lr", {0.001, 0.002}}}}, {"main_metric", "val_loss"}};
  Json config = study_config(dir, describe);
  config["max_epochs"] = 3;
  const pid_t child = start_bulkhead({"study", "--config", write_config(dir, config).string()}, dir / "first.txt");
  const fs::path out = dir / "study";
  ASSERT_TRUE(wait_until([&] { return lines_in(out / "trials" / "000" / "metrics.jsonl") > 0; })) << read_text(dir / "first.txt");
  kill(child, SIGINT);
  EXPECT_EQ(wait_exit(child), 130) << read_text(dir / "first.txt");
  const Json stopped = read_json(out / "study.json");
  EXPECT_EQ(stopped["status"], "interrupted");
  EXPECT_EQ(stopped["trials"][0]["status"], "running") << "cut short: run again on resume";

  auto resumed = bulkhead({"study", "--resume", out.string()}, dir);
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  const Json after = read_json(out / "study.json");
  ASSERT_EQ(after["trials"].size(), 2u);
  for (const auto& trial : after["trials"]) EXPECT_EQ(trial["status"], "ok") << trial.dump();
  EXPECT_EQ(after["status"], "done");
  EXPECT_NE(read_text(out / "trials" / "000" / "train.log").find("resumed from"), std::string::npos)
      << "trial 0 went on from its interrupted checkpoint";
}

TEST(Study, TwoMethodsWithOneNameAreAnErrorNamingBothPaths) {
  auto dir = scratch("dup");
  for (const char* copy : {"a", "b"}) {
    fs::create_directories(dir / copy / "twin");
    Json manifest = read_json(test_plugin("method-python") / "plugin.json");
    manifest["name"] = "twin_method";
    std::ofstream(dir / copy / "twin" / "plugin.json") << manifest.dump();
    fs::copy_file(test_plugin("method-python") / "test_method.py", dir / copy / "twin" / "test_method.py");
  }
  Json config = study_config(dir, kGrid);
  config["method"]["name"] = "twin_method";
  ::setenv("BULKHEAD_PLUGINS_PATH", ((dir / "a").string() + ":" + (dir / "b").string()).c_str(), 1);
  auto result = study(dir, config);
  ::unsetenv("BULKHEAD_PLUGINS_PATH");
  EXPECT_EQ(result.code, 2) << result.output;
  EXPECT_NE(result.output.find((dir / "a" / "twin" / "plugin.json").string()), std::string::npos) << result.output;
  EXPECT_NE(result.output.find((dir / "b" / "twin" / "plugin.json").string()), std::string::npos) << result.output;
}

TEST(Study, AnOrdinaryPluginIsNoMethodAndAMethodIsNoPlugin) {
  auto dir = scratch("kinds");
  Json config = study_config(dir, kGrid);
  config["method"]["name"] = "color_grade";
  auto not_method = study(dir, config);
  EXPECT_EQ(not_method.code, 2);
  EXPECT_NE(not_method.output.find("is not a method plugin"), std::string::npos) << not_method.output;

  Json plain = tiny_config(dir / "run", 1);
  plain["plugins"] = {test_plugin("method-python").string()};
  auto as_plugin = bulkhead({"train", "--config", write_config(dir, plain).string()}, dir);
  EXPECT_NE(as_plugin.code, 0);
  EXPECT_NE(as_plugin.output.find("is a method plugin: name it in train.json's \"method\""), std::string::npos)
      << as_plugin.output;
}

TEST(Study, EvaluateAddsTheMetricsItDeclaredAndMayBeTheScore) {
  auto dir = scratch("evaluate");
  const Json describe = {{"search_space", {{"lr", {0.003}}}}, {"metrics", {"quality", "sample_brightness"}},
                         {"main_metric", "quality"}, {"higher_is_better", true}};
  auto result = study(dir, study_config(dir, describe, {{"evaluate", {{"quality", 0.75}, {"sneaky", 1}}}}));
  ASSERT_EQ(result.code, 0) << result.output;
  const Json record = read_json(dir / "study" / "study.json");
  const Json& trial = record["trials"][0];
  EXPECT_EQ(trial["score"], 0.75) << record.dump(2);
  EXPECT_FALSE(trial["metrics"].contains("sneaky")) << "a name describe_method did not list is ignored";
  EXPECT_TRUE(trial["metrics"].contains("val_loss")) << "beside the trainer's own";
  const double brightness = trial["metrics"].value("sample_brightness", -1.0);
  EXPECT_TRUE(brightness > 0 && brightness < 1) << "the method judged the trial's sample grid: " << brightness;
  EXPECT_EQ(record["method_faults"], 1);
}

TEST(Study, BundledMethodsRunEndToEnd) {
  auto dir = scratch("bundled");
  // Python: Embedding Studio's default method's shape, on a one-point grid to stay short.
  Json config = tiny_config(dir / "python", 1);
  config["method"] = {{"name", "default_method"}, {"options", {{"lr", {0.003}}, {"batch_size", {32}}}}};
  auto python = study(dir, config);
  ASSERT_EQ(python.code, 0) << python.output;
  const Json record = read_json(dir / "python" / "study.json");
  ASSERT_EQ(record["trials"].size(), 1u);
  EXPECT_EQ(record["spec"]["main_metric"], "val_loss");
  for (const char* name : {"mean_loss", "sliding_loss", "min_loss", "max_loss", "mean_val_loss", "min_val_loss"})
    EXPECT_TRUE(record["trials"][0]["metrics"].contains(name)) << name << record.dump(2);

  // JavaScript: a search of its own; its first proposal is the middle of the log range.
  if (!fs::exists(paths::home() / "plugin-sdk" / "node" / "node_modules" / "zeromq"))
    GTEST_SKIP() << "plugin-sdk/node/node_modules missing (scripts/install-node-deps.sh): the JavaScript method is not run";
  config = tiny_config(dir / "js", 1);
  config["method"] = {{"name", "lr_search_js"}, {"options", {{"min_lr", 0.001}, {"max_lr", 0.004}, {"max_evals", 2}}}};
  auto js = study(dir, config);
  ASSERT_EQ(js.code, 0) << js.output;
  const Json searched = read_json(dir / "js" / "study.json");
  ASSERT_EQ(searched["trials"].size(), 2u);
  EXPECT_EQ(searched["suggestion_faults"], 0) << searched.dump(2);
  EXPECT_NEAR(searched["trials"][0]["params"]["lr"].get<double>(), 0.002, 1e-12);
  EXPECT_NE(searched["trials"][1]["params"]["lr"], searched["trials"][0]["params"]["lr"]);
}

TEST(Study, TrainWithAMethodRunsItsFirstTrialOnly) {
  auto dir = scratch("train");
  Json config = study_config(dir, kGrid);
  config["run_dir"] = (dir / "run").string();
  auto result = bulkhead({"train", "--config", write_config(dir, config).string()}, dir);
  ASSERT_EQ(result.code, 0) << result.output;
  const Json trained = read_json(dir / "run" / "config.json");
  EXPECT_EQ(trained["lr"], 0.001);
  EXPECT_EQ(trained["batch_size"], 32) << "the grid's first point";
  EXPECT_FALSE(trained.contains("method"));
  EXPECT_FALSE(fs::exists(dir / "run" / "trials"));
}

}  // namespace
}  // namespace bulkhead::testing
