#include "common/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace bulkhead {
namespace {

std::string describe(int error) {
  const char* name = strerrorname_np(error);
  return std::string(std::strerror(error)) + (name ? std::string(" (") + name + ")" : "");
}

}  // namespace

IoError::IoError(const std::filesystem::path& path, const std::string& action, int error)
    : std::runtime_error("cannot " + action + " " + path.string() + ": " + describe(error)) {}

AtomicFile::AtomicFile(std::filesystem::path path) : path_(std::move(path)), temp_(path_) {
  temp_ += ".tmp";
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw IoError(path_, "write", errno);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFile::fail(const std::string& action) {
  if (error_ == 0) error_ = errno, failed_action_ = action;
}

std::size_t AtomicFile::write(const void* data, std::size_t size) noexcept {
  const auto* bytes = static_cast<const char*>(data);
  for (std::size_t done = 0; error_ == 0 && done < size;) {
    const ssize_t written = ::write(fd_, bytes + done, size - done);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      if (written == 0) errno = EIO;
      fail("write");
    } else {
      done += static_cast<std::size_t>(written);
    }
  }
  return size;
}

void AtomicFile::commit() {
  if (error_ == 0 && ::fsync(fd_) != 0) fail("write");  // a full disk may only show here
  if (::close(fd_) != 0) fail("write");
  fd_ = -1;
  if (error_ == 0 && ::rename(temp_.c_str(), path_.c_str()) != 0) fail("rename onto");
  if (error_ != 0) throw IoError(path_, failed_action_, error_);  // the destructor removes the .tmp
  temp_.clear();
}

void write_file_atomically(const std::filesystem::path& path, const std::string& content) {
  AtomicFile file(path);
  file.write(content.data(), content.size());
  file.commit();
}

}  // namespace bulkhead
