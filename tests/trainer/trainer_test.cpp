// Real training runs on tiny configs: learning, determinism, resume, data
// problems, control requests and the hooks' kwargs.
#include <algorithm>
#include <numeric>

#include "common/schemas.hpp"
#include "test_support.hpp"
#include "train/dataset.hpp"
#include "train/image_io.hpp"

namespace bulkhead::testing {
namespace {

double mean_loss(const std::vector<Json>& records, std::size_t from, std::size_t to) {
  double sum = 0;
  for (std::size_t i = from; i < to; ++i) sum += records[i].at("loss").get<double>();
  return sum / double(to - from);
}

std::vector<std::string> losses(const std::vector<Json>& records) {
  std::vector<std::string> out;
  for (auto& r : records) out.push_back(r.at("loss").dump() + " lr " + r.at("lr").dump());
  return out;
}

TEST(Training, ShortRunLearns) {
  auto dir = scratch("run");
  auto summary = train(tiny_config(dir, 5));
  EXPECT_EQ(summary.outcome, RunOutcome::completed);
  auto steps = read_metrics(dir);
  ASSERT_EQ(steps.size(), 5u * 14u);  // 427 training images / 32 per batch, rounded up
  const double first = mean_loss(steps, 0, 10), last = mean_loss(steps, steps.size() - 10, steps.size());
  EXPECT_LT(last, 0.75 * first) << "first " << first << " last " << last;
  auto val = read_metrics(dir, "val_loss");
  ASSERT_EQ(val.size(), 5u);
  EXPECT_LT(val.back().at("val_loss").get<double>(), val.front().at("val_loss").get<double>());

  // The run folder holds everything it promises.
  for (auto name : {"config.json", "metrics.jsonl", "train.log", "plugin-report.json", "checkpoints/latest.txt"})
    EXPECT_TRUE(fs::exists(dir / name)) << name;
  EXPECT_TRUE(fs::exists(summary.last_samples));
  EXPECT_EQ(resolve_checkpoint_path(dir), summary.last_checkpoint);
  for (auto& entry : fs::directory_iterator(dir / "checkpoints"))
    EXPECT_NE(entry.path().extension(), ".tmp") << "half-written checkpoint left behind";
}

TEST(Training, CpuRunsAreBitIdentical) {
  auto a = scratch("a"), b = scratch("b");
  auto first = train(tiny_config(a, 1));
  auto second = train(tiny_config(b, 1));
  EXPECT_EQ(losses(read_metrics(a)), losses(read_metrics(b)));
  EXPECT_EQ(read_metrics(a, "val_loss"), read_metrics(b, "val_loss"));
  EXPECT_TRUE(same_weights(first.last_checkpoint, second.last_checkpoint));
}

TEST(Training, MetricsReadBackExactly) {
  auto dir = scratch("run");
  train(tiny_config(dir, 1));
  for (auto& record : read_metrics(dir)) {
    double loss = record.at("loss");
    EXPECT_EQ(Json::parse(Json(loss).dump()).get<double>(), loss);
    EXPECT_EQ(static_cast<double>(static_cast<float>(loss)), loss) << "the loss is a float32 written in full";
  }
}

// 2 epochs straight == 1 epoch, stop, resume, 1 more.
TEST(Training, ResumeAtEpochBoundaryContinuesExactly) {
  auto straight = scratch("straight"), split = scratch("split");
  auto reference = train(tiny_config(straight, 2));

  auto stopped = train(tiny_config(split, 2), std::nullopt,
                       stop_when([](auto& hook, auto& kwargs) { return hook == "on_epoch_end" && kwargs["epoch"] == 0; }));
  EXPECT_EQ(stopped.outcome, RunOutcome::stopped);
  EXPECT_EQ(stopped.epochs_done, 1);
  auto resumed = train(tiny_config(split, 2), resolve_checkpoint_path(split));
  EXPECT_EQ(resumed.outcome, RunOutcome::completed);
  EXPECT_EQ(resumed.global_step, reference.global_step);

  EXPECT_TRUE(same_weights(reference.last_checkpoint, resumed.last_checkpoint));
  EXPECT_EQ(losses(read_metrics(straight)), losses(read_metrics(split)));
}

// Stopping mid-epoch (with grad_accum 2) resumes at the same batch of the same epoch order.
TEST(Training, ResumeMidEpochContinuesExactly) {
  auto straight = scratch("straight"), split = scratch("split");
  Json config = tiny_config(straight, 1);
  config["grad_accum"] = 2;
  auto reference = train(config);

  config["run_dir"] = split.string();
  train(config, std::nullopt,
        stop_when([](auto& hook, auto& kwargs) { return hook == "on_step_end" && kwargs["local_step"] == 4; }));
  auto checkpoint = Checkpoint(resolve_checkpoint_path(split)).info();
  EXPECT_EQ(checkpoint.position.batches_done, 6) << "the stop waits for the optimizer step";
  auto resumed = train(config, resolve_checkpoint_path(split));
  EXPECT_TRUE(same_weights(reference.last_checkpoint, resumed.last_checkpoint));
  EXPECT_EQ(losses(read_metrics(straight)), losses(read_metrics(split)));
}

TEST(Training, GradAccumChangeAppliesFromNextEpoch) {
  auto dir = scratch("run");
  std::vector<int> step_start_grad_accum;
  train(tiny_config(dir, 2), std::nullopt, [&](const std::string& hook, const Json& kwargs) -> std::vector<Json> {
    if (hook == "on_step_start") step_start_grad_accum.push_back(kwargs["ed_state"]["grad_accum"]);
    if (hook == "on_epoch_end" && kwargs["epoch"] == 0) return {{{"action", "set_arg"}, {"name", "grad_accum"}, {"value", 2}}};
    return {};
  });
  auto steps = read_metrics(dir);
  ASSERT_EQ(steps.size(), 28u);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const bool second_epoch = i >= 14;
    EXPECT_EQ(steps[i]["grad_accum"], second_epoch ? 2 : 1) << "step " << i;
    EXPECT_EQ(step_start_grad_accum[i], second_epoch ? 2 : 1) << "step " << i;
  }
  // One optimizer step per batch in epoch 0 (14), then one per two batches (7).
  EXPECT_EQ(steps[13]["optimizer_steps"], 14);
  EXPECT_EQ(steps[14]["optimizer_steps"], 14);
  EXPECT_EQ(steps[15]["optimizer_steps"], 15);
  EXPECT_EQ(steps.back()["optimizer_steps"], 21);
}

TEST(Training, InvalidControlRequestIsIgnored) {
  auto dir = scratch("run");
  auto summary = train(tiny_config(dir, 1), std::nullopt, [](const std::string& hook, const Json&) -> std::vector<Json> {
    if (hook == "on_training_start") return {{{"action", "set_arg"}, {"name", "lr"}, {"value", 1}}};
    return {};
  });
  EXPECT_EQ(summary.outcome, RunOutcome::completed);
  for (auto& step : read_metrics(dir)) EXPECT_EQ(step["grad_accum"], 1);
}

TEST(Training, RequestedCheckpointIsSavedWithTag) {
  auto dir = scratch("run");
  std::vector<Json> saved;
  train(tiny_config(dir, 1), std::nullopt, [&](const std::string& hook, const Json& kwargs) -> std::vector<Json> {
    if (hook == "on_checkpoint_saved") saved.push_back(kwargs);
    if (hook == "on_step_end" && kwargs["local_step"] == 2) return {{{"action", "save_checkpoint"}, {"tag", "early"}}};
    return {};
  });
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved[0]["reason"], "requested");
  EXPECT_EQ(saved[0]["tag"], "early");
  EXPECT_EQ(saved[0]["global_step"], 3);
  EXPECT_TRUE(fs::exists(saved[0]["path"].get<std::string>()));
  EXPECT_EQ(saved[1]["reason"], "final");
}

// A plugin cannot reach the run folder (docs/sandbox.md): it asks the trainer to delete a
// checkpoint, which the trainer does only for one it saved on that same plugin's request.
TEST(Training, OnlyACheckpointSavedOnItsOwnRequestIsDeletedForAPlugin) {
  auto dir = scratch("run");
  Json config = tiny_config(dir, 2);
  config["save_every_n_epochs"] = 1;
  std::vector<fs::path> requested, epoch;
  train(config, std::nullopt, [&](const std::string& hook, const Json& kwargs) -> std::vector<Json> {
    if (hook == "on_step_end" && kwargs["global_step"] == 2) return {{{"action", "save_checkpoint"}, {"tag", "mine"}}};
    if (hook != "on_checkpoint_saved") return {};
    const std::string path = kwargs["path"];
    (kwargs["reason"] == "requested" ? requested : epoch).push_back(path);
    if (kwargs["reason"] == "final") return {};
    return {{{"action", "delete_checkpoint"}, {"path", path}}};
  });
  ASSERT_EQ(requested.size(), 1u);
  ASSERT_GE(epoch.size(), 1u);
  EXPECT_FALSE(fs::exists(requested[0])) << "its own requested checkpoint is deleted";
  EXPECT_TRUE(fs::exists(epoch[0])) << "an epoch checkpoint is not the plugin's to delete";
  EXPECT_NE(read_text(dir / "train.log").find("not a checkpoint saved on its request: refused"), std::string::npos);
}

// Every hook's kwargs match its params schema in schemas/hooks.json, in EveryDream2's order.
TEST(Training, HookKwargsMatchTheCatalogue) {
  auto dir = scratch("run");
  std::vector<std::pair<std::string, Json>> calls;
  Json config = tiny_config(dir, 2);
  config["save_every_n_epochs"] = 1;
  train(config, std::nullopt, [&](const std::string& hook, const Json& kwargs) -> std::vector<Json> {
    calls.emplace_back(hook, kwargs);
    return {};
  });
  const auto& schemas = Schemas::instance();
  std::vector<std::string> order;
  for (auto& [hook, kwargs] : calls) {
    auto errors = schemas.validate("hooks.json#/hooks/" + hook + "/params", kwargs);
    EXPECT_TRUE(errors.empty()) << hook << ": " << (errors.empty() ? "" : errors.front().to_string());
    if (hook != "on_log" && hook != "on_step_start" && hook != "on_step_end") order.push_back(hook);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"on_training_start", "on_epoch_start", "on_validation_end", "on_epoch_end",
                                             "on_checkpoint_saved", "on_epoch_start", "on_validation_end",
                                             "on_epoch_end", "on_training_end", "on_checkpoint_saved"}));
  EXPECT_EQ(calls[1].first, "on_epoch_start");
  EXPECT_EQ(calls[2].first, "on_step_start");
  EXPECT_EQ(calls[2].second["global_step"], 0);
  EXPECT_EQ(calls[2].second["batch"]["shape"], Json({32, 3, 16, 16}));
  EXPECT_FALSE(calls[2].second["batch"].contains("image")) << "no pixels unless a plugin wants tensors";
}


TEST(Data, CorruptImageIsSkippedAndCounted) {
  auto data = scratch("data"), dir = scratch("run");
  for (int i = 0; i < 6; ++i) {
    write_test_png(data / ("img" + std::to_string(i) + ".png"), std::uint8_t(40 * i));
    if (i % 2 == 0) std::ofstream(data / ("img" + std::to_string(i) + ".txt")) << "a red square " << i << "\n";
  }
  fs::create_directories(data / "sub");
  std::ofstream(data / "sub" / "broken.png") << "this is not a png";
  std::ofstream(data / "sub" / "broken.txt") << "never used";

  Json config = tiny_config(dir, 1);
  config["data_root"] = data.string();
  config["batch_size"] = 4;
  config["validation_split"] = 0;
  auto summary = train(config);
  EXPECT_EQ(summary.outcome, RunOutcome::completed);
  EXPECT_EQ(summary.skipped_images, 1u);
  EXPECT_EQ(read_metrics(dir).size(), 2u);  // 6 good images, batches of 4

  std::ifstream log(dir / "train.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find((data / "sub" / "broken.png").string()), std::string::npos);
}

TEST(Data, FolderCaptionsAndCrop) {
  auto data = scratch("data");
  write_test_png(data / "red_square.png", 200);
  std::ofstream(data / "b.txt") << "  a caption from a file\n";
  write_test_png(data / "b.png", 10);
  auto loaded = load_dataset(data.string(), {8, 1});
  ASSERT_EQ(loaded.examples.size(), 2u);
  EXPECT_EQ(loaded.examples[0].caption, "a caption from a file");
  EXPECT_EQ(loaded.examples[1].caption, "red") << "EveryDream2: the file name up to its first _";
  EXPECT_EQ(loaded.examples[1].image.width, 8);
  EXPECT_EQ(loaded.examples[1].image.height, 8);
  EXPECT_EQ(loaded.examples[1].image.data[0], 200);
}

TEST(Data, EmptyFolderFailsBeforeTraining) {
  auto data = scratch("data"), dir = scratch("run");
  std::ofstream(data / "notes.txt") << "no images here";
  Json config = tiny_config(dir, 1);
  config["data_root"] = data.string();
  try {
    train(config);
    FAIL() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("no images"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(data.string()), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "metrics.jsonl") && fs::file_size(dir / "metrics.jsonl") > 0);
}

TEST(Data, ShapesDatasetIsDeterministicAndCaptioned) {
  auto a = make_shapes_dataset(16), b = make_shapes_dataset(16);
  ASSERT_EQ(a.examples.size(), 450u);
  for (std::size_t i = 0; i < a.examples.size(); ++i) ASSERT_EQ(a.examples[i].image.data, b.examples[i].image.data);
  EXPECT_EQ(a.examples[0].caption, "a red circle on a white background, top left");
}

}  // namespace
}  // namespace bulkhead::testing
