// atomic_file.hpp — files that are complete under their final name, and I/O errors that say which file and why.
//
//   AtomicFile out("runs/x/checkpoints/epoch-ep0001-gs000014.pt");   // writes ...pt.tmp
//   out.write(bytes, size);                                            // never throws
//   out.commit();                         // fsync, rename; throws IoError: "cannot write ...: No space left on device (ENOSPC)"
//
// Without commit() (an error, an exception) the .tmp file is removed: a full disk leaves no half file behind.
#pragma once

#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace bulkhead {

// A file could not be written or read: the message names the file and the system's reason.
struct IoError : std::runtime_error {
  IoError(const std::filesystem::path& path, const std::string& action, int error);
};

class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path path);  // throws IoError when <path>.tmp cannot be created
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Never throws, so that writers which cannot take an exception midway (LibTorch's archive writer
  // would write again from its destructor, and end the process) finish; the first failure is kept,
  // later writes are skipped, and commit() reports it. Returns size, as a sink callback must.
  std::size_t write(const void* data, std::size_t size) noexcept;
  // Flushes to disk and renames onto the final name. Throws IoError (the .tmp removed) on any failure.
  void commit();

  const std::filesystem::path& path() const { return path_; }

 private:
  void fail(const std::string& action);
  std::filesystem::path path_, temp_;
  int fd_ = -1;
  int error_ = 0;
  std::string failed_action_;
};

// The whole content at once, atomically.
void write_file_atomically(const std::filesystem::path& path, const std::string& content);

}  // namespace bulkhead
