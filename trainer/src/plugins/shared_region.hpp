// shared_region.hpp — one sealed shared-memory region per plugin granted model access, for tensor
// data that should not be copied through the socket (docs/protocol.md, section 9.4).
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
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace bulkhead {

class SharedRegion {
 public:
  // Throws std::runtime_error saying which system call failed.
  SharedRegion(std::size_t slots, std::size_t slot_bytes);
  ~SharedRegion();
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  int fd() const { return fd_; }
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
  // Copies [offset, offset + bytes) of a slot that is lent now; returns "" or why not.
  std::string copy_out(int slot, std::int64_t offset, std::int64_t bytes, std::vector<std::uint8_t>& out) const;
  // Which slots are lent, oldest first.
  std::vector<int> lent() const;

 private:
  int fd_ = -1;
  std::size_t slot_bytes_ = 0;
  std::uint8_t* base_ = nullptr;
  mutable std::mutex mutex_;
  std::vector<bool> owners_;  // true: lent to the plugin
  std::deque<int> lent_;  // oldest first
};

}  // namespace bulkhead
