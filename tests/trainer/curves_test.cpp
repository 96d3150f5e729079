// What a user looks at: TensorBoard event files (read back record by record, CRCs checked),
// loss.png, per-epoch samples, keep_last_n and time-based checkpoints, the progress line.
#include <cstring>

#include <stb/stb_image.h>

#include "test_support.hpp"
#include "train/progress.hpp"
#include "train/tensorboard.hpp"
#include "tensorboard_reader.hpp"

namespace bulkhead::testing {
namespace {

TEST(TensorBoard, RecordFramingMatchesGoldenBytes) {
  EXPECT_EQ(tensorboard::crc32c("123456789"), 0xE3069283u) << "the CRC-32C check value";
  EXPECT_EQ(tensorboard::crc32c(""), 0u);
  // Event{wall_time: 1.5, step: 3, summary{value{tag: "loss", simple_value: 0.25}}}, as protoc encodes it.
  const std::string event = tensorboard::scalar_event(1.5, 3, "loss", 0.25f);
  const std::string golden("\x09\x00\x00\x00\x00\x00\x00\xF8\x3F\x10\x03\x2A\x0D\x0A\x0B\x0A\x04loss\x15\x00\x00\x80\x3E", 26);
  EXPECT_EQ(event, golden);
  const std::string framed = tensorboard::record(event);
  ASSERT_EQ(framed.size(), 8 + 4 + event.size() + 4);
  EXPECT_EQ(framed.substr(0, 8), std::string("\x1A\0\0\0\0\0\0\0", 8));
  std::uint32_t crc;
  std::memcpy(&crc, framed.data() + 8, 4);
  const std::uint32_t raw = tensorboard::crc32c(framed.substr(0, 8));
  EXPECT_EQ(crc, ((raw >> 15) | (raw << 17)) + 0xA282EAD8u) << "masked as TensorFlow masks it";
}

TEST(TensorBoard, RunWritesCurvesSamplesPlotAndPrunesCheckpoints) {
  auto dir = scratch("cmd");
  Json config = tiny_config(dir / "run", 3);
  config["sample_every_n_epochs"] = 1;
  config["save_every_n_epochs"] = 1;
  config["keep_last_n_checkpoints"] = 1;
  config["ckpt_every_n_minutes"] = 0.0002;  // 12 ms: about every step
  std::ofstream(dir / "train.json") << config.dump();
  ASSERT_EQ(run_bulkhead({"train", "--config", (dir / "train.json").string()}, dir / "output.txt"), 0)
      << read_text(dir / "output.txt");
  const fs::path run = dir / "run";

  std::vector<fs::path> files;
  for (auto& entry : fs::directory_iterator(run / "tensorboard")) files.push_back(entry.path());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].filename().string().rfind("events.out.tfevents.", 0), 0u);
  const Events events = read_events(files[0]);
  EXPECT_EQ(events.file_version, "brain.Event:2");
  const auto steps = read_metrics(run);
  ASSERT_EQ(events.scalars.at("loss").size(), steps.size());
  for (std::size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(events.scalars.at("loss")[i], steps[i]["loss"].get<float>());
  EXPECT_EQ(events.scalars.at("val_loss").size(), 3u);
  EXPECT_EQ(events.images.at("samples"), 3) << "epochs 1 and 2, and the final grid";

  int width = 0, height = 0, channels = 0;
  EXPECT_TRUE(stbi_info((run / "loss.png").c_str(), &width, &height, &channels));
  EXPECT_EQ(width, 720);
  EXPECT_TRUE(fs::exists(run / "samples" / "epoch-0001-gs000014-p05.png")) << "one labelled PNG per prompt";

  std::vector<std::string> routine;
  for (auto& entry : fs::directory_iterator(run / "checkpoints")) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("epoch-", 0) == 0 || name.rfind("time-", 0) == 0) routine.push_back(name);
  }
  EXPECT_EQ(routine.size(), 1u) << "keep_last_n_checkpoints 1";
  EXPECT_TRUE(fs::exists(resolve_checkpoint_path(run)));
  const std::string log = read_text(run / "train.log");
  EXPECT_NE(log.find("checkpoint (time)"), std::string::npos);
  EXPECT_NE(log.find("(keep_last_n_checkpoints 1)"), std::string::npos);
  EXPECT_NE(log.find("smoothed"), std::string::npos) << "the progress line, logged when not on a terminal";
}

// 10 of 100 steps in 10 s, of which one sample grid took 2 s; 3 grids to come: 0.8 s x 90 steps + 3 x 2 s.
TEST(Progress, LineShowsElapsedSmoothedLossAndAnEtaWithSampling) {
  Progress progress(0, 25);
  progress.add_sampling_time(2.0);
  ProgressState state{0, 10, 9, 10, 9, 100, 0.5, 64.0, 3};
  const std::string line = progress.line(state, 10.0);
  EXPECT_NE(line.find("loss 0.5000 (smoothed 0.5000)"), std::string::npos) << line;
  EXPECT_NE(line.find("0m10s elapsed, ETA 1m18s"), std::string::npos) << line;
  state.loss = 1.5;
  EXPECT_NE(progress.line(state, 10.0).find("(smoothed 0.5200)"), std::string::npos) << "an exponential average";
}

}  // namespace
}  // namespace bulkhead::testing
