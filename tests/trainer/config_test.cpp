// train.json checks and the train / sample commands as a user runs them.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/ringbuffer_sink.h>

#include "cli/commands.hpp"
#include "common/log.hpp"
#include "common/paths.hpp"
#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

std::string config_error(const Json& user) {
  try {
    resolve_config(user, "my-train.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// Runs "bulkhead <args>" through the real subcommands; returns the exit code.
int run_command(std::vector<std::string> args) {
  CLI::App app;
  add_train_command(app);
  add_sample_command(app);
  std::reverse(args.begin(), args.end());  // CLI11 wants them last-first
  try {
    app.parse(args);
  } catch (const CLI::Error& e) {
    return e.get_exit_code();
  }
  return 0;
}

TEST(Config, DefaultsComeFromTheSchema) {
  auto config = resolve_config(Json::object(), "(defaults)");
  EXPECT_EQ(config.data_root, "builtin:shapes");
  EXPECT_TRUE(config.builtin_data());
  EXPECT_EQ(config.resolution, 32);
  EXPECT_EQ(config.model.channel_mults, (std::vector<int>{1, 2, 2}));
  EXPECT_EQ(config.json.at("plugins"), Json::array());
}

TEST(Config, UnknownKeySuggestsTheNearestKnownKey) {
  auto message = config_error({{"max_epoch", 3}, {"model", {{"chanels", 8}}}});
  EXPECT_NE(message.find("my-train.json"), std::string::npos) << message;
  EXPECT_NE(message.find("/max_epoch: unknown key (did you mean \"max_epochs\"?)"), std::string::npos) << message;
  EXPECT_NE(message.find("/model/chanels: unknown key (did you mean \"channels\"?)"), std::string::npos) << message;
  EXPECT_EQ(nearest_key("zzzzzzzz", {"lr", "seed"}), "");
}

TEST(Config, WrongTypeNamesFieldAndRule) {
  auto message = config_error({{"batch_size", "eight"}});
  EXPECT_NE(message.find("my-train.json"), std::string::npos) << message;
  EXPECT_NE(message.find("/batch_size"), std::string::npos) << message;
  EXPECT_NE(config_error({{"lr", -1}}).find("/lr"), std::string::npos);
  EXPECT_NE(config_error({{"device", "tpu"}}).find("/device"), std::string::npos);
  EXPECT_NE(config_error({{"plugins", {{{"name", "x"}, {"on_failure", "explode"}}}}}).find("/plugins/0"),
            std::string::npos);
}

TEST(Config, ResolutionMustSuitTheModel) {
  auto message = config_error({{"resolution", 40}, {"model", {{"channel_mults", {1, 2, 2, 2, 2}}}}});
  EXPECT_NE(message.find("/resolution"), std::string::npos) << message;
}

TEST(Config, UnknownPluginIsAConfigError) {
  auto message = config_error({{"plugins", {"hook_logger", {{"name", "caption-tag-shufle"}}}}});
  EXPECT_NE(message.find("my-train.json"), std::string::npos) << message;
  EXPECT_NE(message.find("/plugins/1: plugin 'caption-tag-shufle' not found"), std::string::npos) << message;
  EXPECT_EQ(message.find("/plugins/0"), std::string::npos) << message;
}

// EveryDream2's sample_prompts.json: its samples' prompts are used, every other setting is named once.
TEST(Config, EveryDream2PromptJson) {
  auto dir = scratch("config");
  std::ofstream(dir / "sample_prompts.json") << R"({"cfgs": [7.0], "num_inference_steps": 15,
      "samples": [{"prompt": "a red circle", "seed": -1}, {"prompt": "a blue square", "seed": 3}]})";
  auto config = resolve_config({{"sample_prompts", "sample_prompts.json"}}, "train.json", dir);
  EXPECT_EQ(config.sample_prompts, (std::vector<std::string>{"a red circle", "a blue square"}));
  EXPECT_EQ(config.json["sample_prompts"], Json({"a red circle", "a blue square"})) << "config.json stands alone";
  std::vector<std::string> unused;
  for (auto& [key, why] : config.everydream2_unused) unused.push_back(key.substr(0, key.find(' ')));
  EXPECT_EQ(unused, (std::vector<std::string>{"cfgs", "num_inference_steps", "samples[].seed"}));
}

// Every example config, plugin entries included, is ready to run as shipped.
TEST(Config, ExampleConfigsAreValid) {
  int checked = 0;
  for (auto& entry : fs::directory_iterator(paths::home() / "configs")) {
    if (entry.path().extension() != ".json") continue;
    EXPECT_NO_THROW(resolve_config(read_config_file(entry.path()), entry.path().string())) << entry.path();
    ++checked;
  }
  EXPECT_GE(checked, 2);
}

TEST(TrainCommand, BadConfigExitsBeforeTraining) {
  auto dir = scratch("cmd");
  std::ofstream(dir / "train.json") << R"({"max_epoch": 2, "run_dir": ")" << (dir / "run").string() << R"("})";
  EXPECT_EQ(run_command({"train", "--config", (dir / "train.json").string()}), 2);
  EXPECT_FALSE(fs::exists(dir / "run"));

  std::ofstream(dir / "broken.json") << R"({"max_epochs": )";
  EXPECT_EQ(run_command({"train", "--config", (dir / "broken.json").string()}), 2);
}

TEST(TrainCommand, OverridesResumeAndSample) {
  auto dir = scratch("cmd");
  Json config = tiny_config(dir / "ignored", 5);
  std::ofstream(dir / "train.json") << config.dump();
  const auto run = dir / "run";
  ASSERT_EQ(run_command({"train", "--config", (dir / "train.json").string(), "--max-epochs", "1", "--run-dir",
                         run.string(), "--seed", "7", "--device", "cpu"}),
            0);
  Json written = read_config_file(run / "config.json");
  EXPECT_EQ(written["max_epochs"], 1);
  EXPECT_EQ(written["seed"], 7);
  EXPECT_EQ(written["run_dir"], run.string());
  EXPECT_EQ(read_metrics(run).size(), 14u);

  // --resume with a run folder continues in it, from its latest checkpoint.
  ASSERT_EQ(run_command({"train", "--resume", run.string(), "--max-epochs", "2"}), 0);
  auto steps = read_metrics(run);
  ASSERT_EQ(steps.size(), 28u);
  EXPECT_EQ(steps.back()["epoch"], 1);

  auto messages = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(32);
  logger("trainer")->sinks().push_back(messages);
  const auto png = dir / "out.png";
  EXPECT_EQ(run_command({"sample", "--checkpoint", run.string(), "--prompt", "a red zebra", "--out", png.string(),
                         "--steps", "3"}),
            0);
  logger("trainer")->sinks().pop_back();
  EXPECT_TRUE(fs::exists(png));
  bool warned = false;
  for (auto& line : messages->last_formatted()) warned |= line.find("\"zebra\"") != std::string::npos;
  EXPECT_TRUE(warned) << "an unknown prompt word is named in a warning";
}

}  // namespace
}  // namespace bulkhead::testing
