// tensorboard.hpp — metrics and sample grids as TensorBoard event files, without TensorFlow.
//
//   EventWriter events(run_dir / "tensorboard");      // tensorboard --logdir runs/  shows every run
//   events.scalar("loss", step, 0.25f);
//   events.image("samples", step, grid);
//
// An event file is a sequence of records: uint64 length, masked CRC32C of the length, the data,
// masked CRC32C of the data (all little-endian). Each record's data is an Event protocol buffer,
// encoded here by hand: wall_time (1, double), step (2, int64), then file_version (3, string) for
// the first record or summary (5): Summary.value (1) with tag (1), simple_value (2, float) or
// image (4: height 1, width 2, colorspace 3, encoded_image_string 4, a PNG).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <bulkhead/plugin.hpp>

namespace bulkhead {

namespace tensorboard {
std::uint32_t crc32c(const std::string& bytes);
std::uint32_t masked_crc32c(const std::string& bytes);
// One framed record around data.
std::string record(const std::string& data);
std::string file_version_event(double wall_time);
std::string scalar_event(double wall_time, std::int64_t step, const std::string& tag, float value);
std::string image_event(double wall_time, std::int64_t step, const std::string& tag, int width, int height,
                        const std::string& png);
}  // namespace tensorboard

class EventWriter {
 public:
  // Creates <folder>/events.out.tfevents.<unix time>.<host>.<pid> (a resumed run gets a new file; TensorBoard joins them).
  explicit EventWriter(const std::filesystem::path& folder);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void scalar(const std::string& tag, std::int64_t step, float value);
  void image(const std::string& tag, std::int64_t step, const Image& image);
  const std::filesystem::path& path() const { return path_; }

 private:
  void append(const std::string& event);  // throws IoError
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace bulkhead
