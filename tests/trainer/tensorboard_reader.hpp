// tensorboard_reader.hpp — reads TensorBoard event files back as TensorBoard does, for the tests:
// every record's length and data CRCs checked, scalars and image counts by tag.
#pragma once

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "train/tensorboard.hpp"

namespace bulkhead::testing {

inline std::uint64_t varint(const std::string& bytes, std::size_t& at) {
  std::uint64_t value = 0;
  for (int shift = 0;; shift += 7) {
    const auto byte = static_cast<std::uint8_t>(bytes.at(at++));
    value |= std::uint64_t(byte & 0x7F) << shift;
    if (!(byte & 0x80)) return value;
  }
}

// A protocol buffer message's fields: number -> raw payloads (varints as decimal text).
inline std::multimap<int, std::string> fields(const std::string& message) {
  std::multimap<int, std::string> out;
  for (std::size_t at = 0; at < message.size();) {
    const auto key = varint(message, at);
    const int number = int(key >> 3), type = int(key & 7);
    std::size_t size = type == 1 ? 8 : type == 5 ? 4 : type == 2 ? varint(message, at) : 0;
    if (type == 0) out.emplace(number, std::to_string(varint(message, at)));
    else out.emplace(number, message.substr(at, size)), at += size;
  }
  return out;
}

struct Events {
  std::map<std::string, std::vector<float>> scalars;
  std::map<std::string, int> images;
  std::string file_version;
};

// Reads an event file as TensorBoard does: every record's length and data CRCs must match.
inline Events read_events(const fs::path& file) {
  const std::string bytes = read_text(file);
  Events events;
  for (std::size_t at = 0; at < bytes.size();) {
    const std::string length_bytes = bytes.substr(at, 8);
    std::uint64_t length;
    std::uint32_t length_crc, data_crc;
    std::memcpy(&length, length_bytes.data(), 8);
    std::memcpy(&length_crc, bytes.data() + at + 8, 4);
    const std::string data = bytes.substr(at + 12, length);
    std::memcpy(&data_crc, bytes.data() + at + 12 + length, 4);
    EXPECT_EQ(length_crc, tensorboard::masked_crc32c(length_bytes));
    EXPECT_EQ(data_crc, tensorboard::masked_crc32c(data));
    at += 12 + length + 4;
    const auto event = fields(data);
    if (event.count(3)) events.file_version = event.find(3)->second;
    if (!event.count(5)) continue;
    const auto value = fields(fields(event.find(5)->second).find(1)->second);
    const std::string tag = value.find(1)->second;
    if (value.count(4)) {
      ++events.images[tag];
    } else {
      float number;
      std::memcpy(&number, value.find(2)->second.data(), 4);
      events.scalars[tag].push_back(number);
    }
  }
  return events;
}

}  // namespace bulkhead::testing
