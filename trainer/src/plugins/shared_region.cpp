#include "plugins/shared_region.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace bulkhead {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("shared region: " + what + ": " + std::strerror(errno));
}

}  // namespace

SharedRegion::SharedRegion(std::size_t slots, std::size_t slot_bytes) : slot_bytes_(slot_bytes), owners_(slots, false) {
  // CLOEXEC: it reaches only the host it is handed to (host_process.cpp clears the flag there).
  fd_ = ::memfd_create("bulkhead-model-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd_ < 0) fail("memfd_create");
  const std::size_t bytes = slots * slot_bytes;
  if (::ftruncate(fd_, static_cast<off_t>(bytes)) != 0) fail("ftruncate");
  if (::fcntl(fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) fail("sealing");
  void* mapped = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (mapped == MAP_FAILED) fail("mmap");
  base_ = static_cast<std::uint8_t*>(mapped);
}

SharedRegion::~SharedRegion() {
  if (base_) ::munmap(base_, owners_.size() * slot_bytes_);
  if (fd_ >= 0) ::close(fd_);
}

std::optional<int> SharedRegion::lend() {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto free = std::find(owners_.begin(), owners_.end(), false);
  if (free == owners_.end()) return std::nullopt;
  *free = true;
  const int slot = static_cast<int>(free - owners_.begin());
  lent_.push_back(slot);
  return slot;
}

void SharedRegion::give_back(int slot) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto found = std::find(lent_.begin(), lent_.end(), slot);
  if (found == lent_.end()) return;
  owners_[static_cast<std::size_t>(slot)] = false;
  lent_.erase(found);
}

void SharedRegion::give_back_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::fill(owners_.begin(), owners_.end(), false);
  lent_.clear();
}

std::uint8_t* SharedRegion::slot_data(int slot) { return base_ + static_cast<std::size_t>(slot) * slot_bytes_; }

std::string SharedRegion::copy_out(int slot, std::int64_t offset, std::int64_t bytes, std::vector<std::uint8_t>& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (slot < 0 || std::size_t(slot) >= owners_.size())
    return "slot " + std::to_string(slot) + " does not exist (the region has " + std::to_string(owners_.size()) + ")";
  if (!owners_[std::size_t(slot)]) return "slot " + std::to_string(slot) + " is not lent to the plugin";
  if (offset < 0 || bytes < 0 || std::uint64_t(offset) + std::uint64_t(bytes) > slot_bytes_)
    return "bytes " + std::to_string(offset) + ".." + std::to_string(offset + bytes) + " are outside the slot's " +
           std::to_string(slot_bytes_);
  const std::uint8_t* from = base_ + std::size_t(slot) * slot_bytes_ + std::size_t(offset);
  out.assign(from, from + bytes);
  return "";
}

std::vector<int> SharedRegion::lent() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {lent_.begin(), lent_.end()};
}

}  // namespace bulkhead
