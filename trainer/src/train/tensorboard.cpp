#include "train/tensorboard.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/atomic_file.hpp"
#include "train/image_io.hpp"

namespace bulkhead {
namespace tensorboard {
namespace {

// Protocol buffer wire format: a key is (field << 3) | wire type.
enum WireType { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

void varint(std::string& out, std::uint64_t value) {
  while (value >= 0x80) {
    out += static_cast<char>(value | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
}

void key(std::string& out, int field, WireType type) { varint(out, (std::uint64_t(field) << 3) | type); }

template <typename T>
void little_endian(std::string& out, T value) {
  char bytes[sizeof value];
  std::memcpy(bytes, &value, sizeof value);  // x86 and ARM Linux are little-endian, as the format is
  out.append(bytes, sizeof value);
}

void bytes_field(std::string& out, int field, const std::string& value) {
  key(out, field, kBytes);
  varint(out, value.size());
  out += value;
}

std::string event_header(double wall_time, std::int64_t step) {
  std::string event;
  key(event, 1, kFixed64);
  little_endian(event, wall_time);
  key(event, 2, kVarint);
  varint(event, static_cast<std::uint64_t>(step));
  return event;
}

std::string summary_event(double wall_time, std::int64_t step, const std::string& value) {
  std::string summary;
  bytes_field(summary, 1, value);  // Summary.value
  std::string event = event_header(wall_time, step);
  bytes_field(event, 5, summary);  // Event.summary
  return event;
}

std::array<std::uint32_t, 256> crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;  // Castagnoli, reflected
    table[i] = crc;
  }
  return table;
}

double now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::uint32_t crc32c(const std::string& bytes) {
  static const auto table = crc_table();
  std::uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : bytes) crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

std::uint32_t masked_crc32c(const std::string& bytes) {
  const std::uint32_t crc = crc32c(bytes);
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

std::string record(const std::string& data) {
  std::string length;
  little_endian(length, static_cast<std::uint64_t>(data.size()));
  std::string out = length;
  little_endian(out, masked_crc32c(length));
  out += data;
  little_endian(out, masked_crc32c(data));
  return out;
}

std::string file_version_event(double wall_time) {
  std::string event = event_header(wall_time, 0);
  bytes_field(event, 3, "brain.Event:2");
  return event;
}

std::string scalar_event(double wall_time, std::int64_t step, const std::string& tag, float value) {
  std::string summary_value;
  bytes_field(summary_value, 1, tag);
  key(summary_value, 2, kFixed32);
  little_endian(summary_value, value);
  return summary_event(wall_time, step, summary_value);
}

std::string image_event(double wall_time, std::int64_t step, const std::string& tag, int width, int height,
                        const std::string& png) {
  std::string image;
  key(image, 1, kVarint);
  varint(image, static_cast<std::uint64_t>(height));
  key(image, 2, kVarint);
  varint(image, static_cast<std::uint64_t>(width));
  key(image, 3, kVarint);
  varint(image, 3);  // RGB
  bytes_field(image, 4, png);
  std::string summary_value;
  bytes_field(summary_value, 1, tag);
  bytes_field(summary_value, 4, image);
  return summary_event(wall_time, step, summary_value);
}

}  // namespace tensorboard

EventWriter::EventWriter(const std::filesystem::path& folder) {
  std::filesystem::create_directories(folder);
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  const double wall_time = tensorboard::now();
  path_ = folder / ("events.out.tfevents." + std::to_string(static_cast<long long>(wall_time)) + "." + host + "." +
                    std::to_string(::getpid()));
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw IoError(path_, "create", errno);
  append(tensorboard::file_version_event(wall_time));
}

EventWriter::~EventWriter() {
  if (fd_ >= 0) ::close(fd_);
}

// Straight to the file, record by record: TensorBoard shows a running run, and a crash loses nothing written.
void EventWriter::append(const std::string& event) {
  const std::string framed = tensorboard::record(event);
  if (::write(fd_, framed.data(), framed.size()) != static_cast<ssize_t>(framed.size()))
    throw IoError(path_, "write", errno ? errno : EIO);
}

void EventWriter::scalar(const std::string& tag, std::int64_t step, float value) {
  append(tensorboard::scalar_event(tensorboard::now(), step, tag, value));
}

void EventWriter::image(const std::string& tag, std::int64_t step, const Image& image) {
  append(tensorboard::image_event(tensorboard::now(), step, tag, image.width, image.height, encode_png(image)));
}

}  // namespace bulkhead
