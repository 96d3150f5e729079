// A full disk, stale or wrong checkpoints, bad config files and huge images: each ends with a plain
// message naming the file, no stack trace, and nothing good lost.
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "test_support.hpp"

namespace bulkhead::testing {
namespace {

bool has_tmp_files(const fs::path& folder) {
  for (auto& entry : fs::recursive_directory_iterator(folder))
    if (entry.path().extension() == ".tmp") return true;
  return false;
}

void expect_no_stack_trace(const std::string& output) {
  for (const char* trace : {"terminate called", "Exception raised from", "c10::Error", "frame #"})
    EXPECT_EQ(output.find(trace), std::string::npos) << trace << " in:\n" << output;
}

// A tmpfs of a few MB, unmounted (lazily) at the end of the test.
class SmallFileSystem {
 public:
  explicit SmallFileSystem(const fs::path& where) : where_(where) {
    fs::create_directories(where);
    if (::geteuid() != 0) reason_ = "mounting a tmpfs needs root";
    else if (::mount("tmpfs", where.c_str(), "tmpfs", 0, "size=8m") != 0) reason_ = std::strerror(errno);
  }
  ~SmallFileSystem() {
    if (reason_.empty()) ::umount2(where_.c_str(), MNT_DETACH);
  }
  const std::string& unavailable() const { return reason_; }

  // Fills the file system until `left` bytes are free.
  void fill_leaving(std::uintmax_t left) const {
    struct statvfs info {};
    ::statvfs(where_.c_str(), &info);
    const std::uintmax_t free = std::uintmax_t(info.f_bavail) * info.f_bsize;
    std::ofstream filler(where_ / "filler", std::ios::binary);
    const std::string block(1 << 16, 'x');
    for (std::uintmax_t written = 0; written + left < free; written += block.size())
      filler.write(block.data(), std::streamsize(std::min<std::uintmax_t>(block.size(), free - left - written)));
  }

 private:
  fs::path where_;
  std::string reason_;
};

TEST(DiskFull, CheckpointOnAFullFileSystemEndsPlainlyAndKeepsTheLastOne) {
  auto dir = scratch("cmd");
  SmallFileSystem small(dir / "small");
  if (!small.unavailable().empty()) GTEST_SKIP() << "no tmpfs: " << small.unavailable();
  const fs::path run = dir / "small" / "run";
  Json config = tiny_config(run, 6);
  config["save_every_n_epochs"] = 1;
  std::ofstream(dir / "train.json") << config.dump();
  const pid_t trainer = start_trainer(dir / "train.json", dir / "output.txt");
  ASSERT_TRUE(wait_until([&] { return fs::exists(run / "checkpoints" / "latest.txt"); })) << read_text(dir / "output.txt");
  const fs::path first = resolve_checkpoint_path(run);
  // Room for the next epoch's metrics and log lines, not for its checkpoint.
  small.fill_leaving(fs::file_size(first) / 2);

  EXPECT_EQ(wait_exit(trainer), 1);
  const std::string output = read_text(dir / "output.txt");
  EXPECT_NE(output.find("No space left on device (ENOSPC)"), std::string::npos) << output;
  EXPECT_NE(output.find("cannot write " + (run / "checkpoints").string()), std::string::npos) << output;
  expect_no_stack_trace(output);
  EXPECT_FALSE(has_tmp_files(run)) << "temporary files removed";
  EXPECT_EQ(resolve_checkpoint_path(run), first) << "latest.txt still names the last good checkpoint";
  EXPECT_EQ(Checkpoint(first).info().position.epoch, 1);
}

// latest.txt names a deleted checkpoint: resume takes the newest one that reads back, and says so.
TEST(Resume, FallsBackToTheNewestIntactCheckpoint) {
  auto dir = scratch("run");
  Json config = tiny_config(dir, 2);
  config["save_every_n_epochs"] = 1;
  auto summary = train(config);
  fs::remove(summary.last_checkpoint);
  EXPECT_EQ(run_bulkhead({"train", "--resume", dir.string()}, dir / "resume.txt"), 0) << read_text(dir / "resume.txt");
  const std::string output = read_text(dir / "resume.txt");
  EXPECT_NE(output.find("names " + summary.last_checkpoint.filename().string() + ", which is missing"),
            std::string::npos) << output;
  EXPECT_NE(output.find("using the newest intact checkpoint, " + (dir / "checkpoints" / "epoch-ep0001-gs000014.pt").string()),
            std::string::npos) << output;
}

TEST(Resume, NotACheckpointIsACommandLineError) {
  auto dir = scratch("cmd");
  std::ofstream(dir / "notes.pt") << "not a checkpoint";
  EXPECT_EQ(run_bulkhead({"train", "--resume", (dir / "notes.pt").string()}, dir / "output.txt"), 2);
  const std::string output = read_text(dir / "output.txt");
  EXPECT_NE(output.find((dir / "notes.pt").string() + " is not a readable Bulkhead checkpoint"), std::string::npos)
      << output;
  expect_no_stack_trace(output);
  EXPECT_LE(lines_in(dir / "output.txt"), 2u) << output;
}

TEST(ConfigFile, ArrayOrHugeNumberNamesTheFile) {
  auto dir = scratch("cmd");
  std::ofstream(dir / "array.json") << "[1, 2]";
  std::ofstream(dir / "huge.json") << R"({"lr": 1e309})";
  for (const char* name : {"array.json", "huge.json"}) {
    EXPECT_EQ(run_bulkhead({"train", "--config", (dir / name).string(), "--run-dir", (dir / "run").string()},
                           dir / "output.txt"),
              2) << name;
    const std::string output = read_text(dir / "output.txt");
    EXPECT_NE(output.find((dir / name).string() + ": "), std::string::npos) << output;
    expect_no_stack_trace(output);
  }
  EXPECT_NE(read_text(dir / "output.txt").find("number overflow"), std::string::npos);
}

// A file whose header claims too many pixels is skipped before decoding, by name.
TEST(Data, ImageOverThePixelLimitIsSkippedByName) {
  auto dir = scratch("cmd"), data = scratch("data");
  for (int i = 0; i < 3; ++i) write_test_png(data / ("small" + std::to_string(i) + ".png"), 100);
  Image big;
  big.width = big.height = 64;
  big.data.assign(64 * 64 * 3, 7);
  write_image(data / "big.png", big);
  Json config = tiny_config(dir / "run", 1);
  config["data_root"] = data.string();
  config["max_image_pixels"] = 1000;
  config["batch_size"] = 3;
  config["validation_split"] = 0;
  std::ofstream(dir / "train.json") << config.dump();
  EXPECT_EQ(run_bulkhead({"train", "--config", (dir / "train.json").string()}, dir / "output.txt"), 0);
  const std::string log = read_text(dir / "run" / "train.log");
  EXPECT_NE(log.find("skipping image " + (data / "big.png").string() +
                     ": 64x64 = 4096 pixels, more than max_image_pixels (1000)"),
            std::string::npos) << log;
  EXPECT_EQ(read_metrics(dir / "run").size(), 1u) << "the three small images, one batch";
}

}  // namespace
}  // namespace bulkhead::testing
