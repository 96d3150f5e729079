// Batched, prefetched transforms (docs/protocol.md, section 3.7; docs/training.md, "The loader"),
// through real training runs with real plugin hosts in three languages: batching and how far the
// loader runs ahead change how the samples travel, never what is trained on.
#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

// The demo's transforms and an image one: JavaScript and C++ captions, Python colour grading, and
// a C++ fault plugin that segfaults on the five captions of blue squares on black (the rest get a
// suffix), each time it sees one.
Json transform_plugins(bool with_crashes) {
  Json plugins = {{{"name", "caption_case_js"}, {"options", {{"case", "upper"}}}},
                  {{"name", "caption_tag_shuffle"}, {"options", {{"keep_tags", 1}}}},
                  {{"name", "color_grade"}}};
  if (with_crashes)
    plugins.push_back({{"name", test_plugin("fault").string()},
                       {"options", {{"fault", "segfault"}, {"hooks", {"transform_caption"}}, {"poison", "BLUE SQUARE ON A BLACK"},
                                    {"caption_suffix", " ok"}}},
                       {"max_restarts", 1000},
                       {"restart_backoff_ms", 0},  // a backoff that grew past the deadline would skip samples
                       {"timeout_ms", 30000}});    // and so would a restart slower than it on a loaded machine
  return plugins;
}

std::vector<double> losses_of(const fs::path& run_dir, int prefetch, bool batched, bool with_crashes) {
  Json config = tiny_config(run_dir, with_crashes ? 1 : 2);
  // Crashes with two workers: a sample of the other worker's may meet the host dead or backing off
  // and pass through untransformed, which depends on timing; one worker keeps the run exact.
  if (with_crashes) config["num_workers"] = 1;
  config["prefetch_batches"] = prefetch;
  config["batch_transforms"] = batched;
  config["plugins"] = transform_plugins(with_crashes);
  train(config);
  std::vector<double> losses;
  for (const auto& record : read_metrics(run_dir)) losses.push_back(record["loss"]);
  return losses;
}

TEST(BatchedTransforms, SameLossesBitForBitWithBatchingAndPrefetchOnAndOff) {
  const auto dir = scratch("runs");
  const auto one_by_one = losses_of(dir / "one-by-one", 1, false, false);
  const auto batched = losses_of(dir / "batched", 4, true, false);
  ASSERT_FALSE(one_by_one.empty());
  EXPECT_EQ(batched, one_by_one);  // exact: doubles compared bit for bit

  const Json js = plugin_report_of(dir / "batched", "caption_case_js");
  EXPECT_GT(js["hooks"]["transform_captions"]["items"].get<long>(), 0) << js.dump(2);
  EXPECT_FALSE(js["hooks"].contains("transform_caption")) << js.dump(2);  // not one message per caption
}

// When every transform plugin transforms only, the loader makes the next epoch's samples while an
// epoch ends (docs/training.md, "The loader"); a plugin that transforms and also sees the epochs
// (the recorder, which passes everything through) keeps each epoch's samples in their epoch. The
// losses are the same bit for bit.
TEST(BatchedTransforms, TheNextEpochMadeAheadTrainsTheSame) {
  const auto dir = scratch("ahead");
  auto run = [&](const std::string& name, bool with_recorder) {
    Json config = tiny_config(dir / name, 3);
    config["plugins"] = transform_plugins(false);
    if (with_recorder) config["plugins"].push_back(test_plugin("recorder").string());
    train(config);
    std::vector<double> losses;
    for (const auto& record : read_metrics(dir / name)) losses.push_back(record["loss"]);
    return losses;
  };
  const auto ahead = run("ahead", false);
  const auto in_its_epoch = run("in-its-epoch", true);
  ASSERT_FALSE(ahead.empty());
  EXPECT_EQ(ahead, in_its_epoch);  // exact: doubles compared bit for bit
  const std::string said = "makes each next epoch's samples while an epoch ends";
  EXPECT_NE(read_text(dir / "ahead" / "train.log").find(said), std::string::npos);
  EXPECT_EQ(read_text(dir / "in-its-epoch" / "train.log").find(said), std::string::npos);
}

TEST(BatchedTransforms, ACrashInABatchLosesOnlyItsCaption) {
  const auto dir = scratch("crashes");
  const auto one_by_one = losses_of(dir / "one-by-one", 1, false, true);
  const auto batched = losses_of(dir / "batched", 4, true, true);
  EXPECT_EQ(batched, one_by_one);  // the same captions were lost either way: only the poisoned ones

  const Json fault = plugin_report_of(dir / "batched", "fault");
  ASSERT_FALSE(fault.is_null());
  EXPECT_GT(fault["hooks"]["transform_captions"]["crashes"].get<long>(), 0) << fault.dump(2);
  EXPECT_GT(fault["hooks"]["transform_caption"]["crashes"].get<long>(), 0) << fault.dump(2);
  EXPECT_FALSE(fault["quarantined"].get<bool>()) << fault.dump(2);
}

}  // namespace
}  // namespace bulkhead::testing
