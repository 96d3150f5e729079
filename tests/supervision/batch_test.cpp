// Batched transforms under faults (docs/protocol.md, section 3.7): a batch that fails whole is
// retried item by item, so a crash or a hang costs only the item that caused it.
#include <gtest/gtest.h>

#include "supervision/support.hpp"

namespace bulkhead::test {
namespace {

std::vector<std::string> captions_with_poison_at(std::size_t poisoned, std::size_t count) {
  std::vector<std::string> captions;
  for (std::size_t i = 0; i < count; ++i) captions.push_back("caption " + std::to_string(i) + (i == poisoned ? " POISON" : ""));
  return captions;
}

// Every caption but the poisoned one came back transformed; the poisoned one passed through untouched.
void expect_only_the_poisoned_caption_lost(const std::vector<std::string>& sent, const std::vector<std::string>& got,
                                           std::size_t poisoned) {
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[i], i == poisoned ? sent[i] : sent[i] + "+") << i;
}

struct BatchFault : ::testing::TestWithParam<const char*> {};

TEST_P(BatchFault, CostsOnlyTheItemThatCausedIt) {
  const std::string mode = GetParam();
  auto s = settings("fault", {{"fault", mode}, {"poison", "POISON"}, {"caption_suffix", "+"}});
  s.restart_backoff_ms = 100;  // the default: each retry waits for the backoff instead of being skipped
  if (mode == "hang") s.timeout_ms = 1000;  // the batch's deadline is 1000 ms x 4 captions, the item's 1000 ms
  auto runner = make_runner(s);
  const auto sent = captions_with_poison_at(1, 4);
  expect_only_the_poisoned_caption_lost(sent, runner->transform_captions(sent), 1);

  const Json report = plugin_report(*runner);
  EXPECT_EQ(faults(*runner, "transform_captions"), 1) << report.dump(2);  // the batch, whole
  EXPECT_EQ(faults(*runner, "transform_caption"), 1) << report.dump(2);   // then the poisoned item alone
  EXPECT_EQ(counter(*runner, "transform_caption", "ok"), 3) << report.dump(2);
  if (mode != "throw") {
    EXPECT_GE(report["backoff_waits"].get<long>(), 1) << report.dump(2);  // a host was lost
  }

  // The plugin is back and takes batches again.
  const std::vector<std::string> clean = {"a", "b", "c"};
  EXPECT_EQ(runner->transform_captions(clean), (std::vector<std::string>{"a+", "b+", "c+"}));
  EXPECT_EQ(counter(*runner, "transform_captions", "ok"), 1) << plugin_report(*runner).dump(2);
  EXPECT_EQ(counter(*runner, "transform_captions", "items"), 3) << plugin_report(*runner).dump(2);
}

INSTANTIATE_TEST_SUITE_P(Modes, BatchFault, ::testing::Values("segfault", "hang", "throw"));

// The batch's crash and its poisoned item's are one fault toward quarantine, as the item alone was
// before batching: a plugin allowed one fault survives one poisoned caption, and the next crash
// is the one too many.
TEST(Batch, APoisonedItemIsOneFaultTowardQuarantine) {
  auto s = settings("fault", {{"fault", "segfault"}, {"poison", "POISON"}, {"caption_suffix", "+"}});
  s.max_restarts = 1;
  auto runner = make_runner(s);
  const auto sent = captions_with_poison_at(2, 4);
  expect_only_the_poisoned_caption_lost(sent, runner->transform_captions(sent), 2);
  EXPECT_FALSE(plugin_report(*runner)["quarantined"].get<bool>()) << plugin_report(*runner).dump(2);
  EXPECT_EQ(runner->transform_captions({"a", "b"}), (std::vector<std::string>{"a+", "b+"}));

  runner->transform_captions(captions_with_poison_at(0, 3));
  EXPECT_TRUE(plugin_report(*runner)["quarantined"].get<bool>()) << plugin_report(*runner).dump(2);
}

TEST(Batch, AFailClosedPluginStopsNamingTheItemNotTheBatch) {
  auto s = settings("fault", {{"fault", "segfault"}, {"poison", "POISON"}, {"caption_suffix", "+"}});
  s.abort_on_failure = true;
  auto runner = make_runner(s);
  const auto sent = captions_with_poison_at(1, 3);
  runner->transform_captions(sent);
  ASSERT_TRUE(runner->abort_reason().has_value());
  EXPECT_NE(runner->abort_reason()->find("transform_caption crashed"), std::string::npos) << *runner->abort_reason();
}

TEST(Batch, OneMessagePerBatchAndItemsCountedApart) {
  auto runner = make_runner(settings("fault", {{"caption_suffix", "+"}}));
  std::vector<std::string> sent;
  for (int i = 0; i < 32; ++i) sent.push_back("c" + std::to_string(i));
  for (int batch = 0; batch < 3; ++batch) ASSERT_EQ(runner->transform_captions(sent)[31], "c31+");
  EXPECT_EQ(counter(*runner, "transform_captions", "calls"), 3);
  EXPECT_EQ(counter(*runner, "transform_captions", "items"), 96);
  EXPECT_EQ(counter(*runner, "transform_captions", "items_failed"), 0);
  EXPECT_EQ(counter(*runner, "transform_caption", "calls"), 0);
  // One item alone goes by the per-item hook, as it always did.
  EXPECT_EQ(runner->transform_caption("x"), "x+");
  EXPECT_EQ(counter(*runner, "transform_caption", "calls"), 1);
}

TEST(Batch, ImagesComeBackInOrderBitExact) {
  auto runner = make_runner(settings("fault"));
  std::vector<Image> sent;
  for (int side : {8, 16, 24}) sent.push_back(test_image(side, side));
  const auto got = runner->transform_pil_images(sent);
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[i].data, sent[i].data) << i;
  EXPECT_EQ(counter(*runner, "transform_pil_images", "items"), 3);
}

}  // namespace
}  // namespace bulkhead::test
