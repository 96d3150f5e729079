#include "supervisor/shared_region.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace bulkhead {
namespace {

// Linux 5.1's seal; older C libraries lack the name.
#ifdef F_SEAL_FUTURE_WRITE
constexpr int kSealFutureWrite = F_SEAL_FUTURE_WRITE;
#else
constexpr int kSealFutureWrite = 0x0010;
#endif

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("shared region: " + what + ": " + std::strerror(errno));
}

}  // namespace

SharedRegion::SharedRegion(std::size_t slots, std::size_t slot_bytes, Sides sides)
    : slot_bytes_(slot_bytes), owners_(slots, false) {
  if (sides == Sides::shared) {
    requests_ = replies_ = seal_and_map("bulkhead-model-region", false);
  } else {
    requests_ = seal_and_map("bulkhead-image-requests", true);
    replies_ = seal_and_map("bulkhead-image-replies", false);
  }
}

SharedRegion::Memory SharedRegion::seal_and_map(const char* name, bool read_only_for_others) const {
  // CLOEXEC: it reaches only the host it is handed to (host_process.cpp clears the flag there).
  Memory memory;
  memory.fd = ::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (memory.fd < 0) fail("memfd_create");
  if (::ftruncate(memory.fd, static_cast<off_t>(bytes())) != 0) fail("ftruncate");
  // Mapped before the seals: F_SEAL_FUTURE_WRITE keeps this one mapping writable, and only it.
  void* mapped = ::mmap(nullptr, bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, memory.fd, 0);
  if (mapped == MAP_FAILED) fail("mmap");
  memory.base = static_cast<std::uint8_t*>(mapped);
  const int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL | (read_only_for_others ? kSealFutureWrite : 0);
  if (::fcntl(memory.fd, F_ADD_SEALS, seals) != 0) fail("sealing");
  return memory;
}

SharedRegion::~SharedRegion() {
  const auto release = [this](const Memory& memory) {
    if (memory.base) ::munmap(memory.base, bytes());
    if (memory.fd >= 0) ::close(memory.fd);
  };
  release(requests_);
  if (replies_.fd != requests_.fd) release(replies_);
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

std::uint8_t* SharedRegion::slot_data(int slot) { return requests_.base + static_cast<std::size_t>(slot) * slot_bytes_; }

std::string SharedRegion::copy_out(int slot, std::int64_t offset, std::int64_t bytes, std::vector<std::uint8_t>& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (slot < 0 || std::size_t(slot) >= owners_.size())
    return "slot " + std::to_string(slot) + " does not exist (the region has " + std::to_string(owners_.size()) + ")";
  if (!owners_[std::size_t(slot)]) return "slot " + std::to_string(slot) + " is not lent to the plugin";
  if (offset < 0 || bytes < 0 || std::uint64_t(offset) + std::uint64_t(bytes) > slot_bytes_)
    return "bytes " + std::to_string(offset) + ".." + std::to_string(offset + bytes) + " are outside the slot's " +
           std::to_string(slot_bytes_);
  const std::uint8_t* from = replies_.base + std::size_t(slot) * slot_bytes_ + std::size_t(offset);
  out.assign(from, from + bytes);
  return "";
}

std::vector<int> SharedRegion::lent() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {lent_.begin(), lent_.end()};
}

}  // namespace bulkhead
