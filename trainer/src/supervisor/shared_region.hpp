// shared_region.hpp — a sealed shared-memory region per plugin host, for bytes that should not be
// copied through the socket: model access's tensors (docs/protocol.md, section 9.4) and images
// (section 2.2).
//
//   SharedRegion region(4, 1 << 20);              // memfd: 4 slots of 1 MiB, sealed, mapped
//   if (auto slot = region.lend()) { std::memcpy(region.slot_data(*slot), ...); send with "slot": *slot; }
//   std::string why = region.copy_out(slot, offset, bytes, out);   // on the reply: copied, then checked
//   region.give_back(slot);                        // the reply (or the failure) of that request came
//
// The region's size is sealed (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): the plugin can neither
// shrink it under the trainer's mapping (which would fault the trainer) nor unseal it. Slots change
// owner only by message: lent with a request, back with its reply or its failure. The trainer never
// reads a slot it has not lent, and copies before it checks.
//
// Sides::shared is one memory both sides read and write (model access: updates go where the
// tensors were). Sides::split is two (images): requests in one the plugin can map read-only only
// (F_SEAL_FUTURE_WRITE: no writable mapping, no write(2), after the trainer's own), replies in the
// other, slot i of each lent together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <bulkhead/wire.hpp>

namespace bulkhead {

class SharedRegion {
 public:
  enum class Sides { shared, split };

  // Throws std::runtime_error saying which system call failed.
  SharedRegion(std::size_t slots, std::size_t slot_bytes, Sides sides = Sides::shared);
  ~SharedRegion();
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  // The memory of requests (the trainer writes, the plugin reads), and of replies (the same one
  // unless split).
  int fd() const { return requests_.fd; }
  int reply_fd() const { return replies_.fd; }
  std::size_t slots() const { return owners_.size(); }
  std::size_t slot_bytes() const { return slot_bytes_; }

  // A free slot, the plugin's from now on; nullopt when every slot is lent (a step never waits).
  std::optional<int> lend();
  // The slot is the trainer's again: the reply to the request it was lent with came, or the request failed.
  void give_back(int slot);
  // Every slot back (the host died: nothing it wrote counts).
  void give_back_all();
  // Writable only while the trainer owns the slot (between give_back and lend).
  std::uint8_t* slot_data(int slot);
  // A lent slot's two places: where the trainer writes the request (before sending it) and where
  // it reads the reply (copied, before any check).
  wire::RegionSlot request_slot(int slot) { return {slot, slot_data(slot), slot_bytes_}; }
  wire::RegionSlot reply_slot(int slot) {
    return {slot, replies_.base + static_cast<std::size_t>(slot) * slot_bytes_, slot_bytes_};
  }
  // Copies [offset, offset + bytes) of a slot that is lent now; returns "" or why not.
  std::string copy_out(int slot, std::int64_t offset, std::int64_t bytes, std::vector<std::uint8_t>& out) const;
  // Which slots are lent, oldest first.
  std::vector<int> lent() const;

 private:
  struct Memory {
    int fd = -1;
    std::uint8_t* base = nullptr;
  };
  // One sealed, mapped memfd of the region's size; read_only_for_others: F_SEAL_FUTURE_WRITE.
  Memory seal_and_map(const char* name, bool read_only_for_others) const;
  std::size_t bytes() const { return owners_.size() * slot_bytes_; }

  std::size_t slot_bytes_ = 0;
  Memory requests_, replies_;  // the same memory unless split
  mutable std::mutex mutex_;
  std::vector<bool> owners_;  // true: lent to the plugin
  std::deque<int> lent_;  // oldest first
};

}  // namespace bulkhead
