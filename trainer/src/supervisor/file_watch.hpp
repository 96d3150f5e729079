// file_watch.hpp — noticing that a plugin's files changed on disk (bulkhead train --watch-plugins).
//
//   FileWatch watch({{"shout", {"/home/me/plugins/shout"}}});
//   for (auto& name : watch.take_changed()) runner.reload(name);   // between steps
//
// A thread polls each watched path twice a second: the names, sizes and modification times of
// the files under it. An editor saves in several writes, so a change is reported once the files
// have stayed the same for one more poll. Polling, not inotify: it needs no descriptor per folder,
// and sees a plugin's library rebuilt in place just the same.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace bulkhead {

class FileWatch {
 public:
  // Key (a plugin's name) -> the files and folders that make it up.
  explicit FileWatch(std::map<std::string, std::vector<std::filesystem::path>> watched);
  ~FileWatch();
  FileWatch(const FileWatch&) = delete;
  FileWatch& operator=(const FileWatch&) = delete;

  // Keys whose files changed and settled since the last call.
  std::vector<std::string> take_changed();

 private:
  struct Entry {
    std::vector<std::filesystem::path> paths;
    std::uint64_t reported = 0;  // the fingerprint last reported (or the first seen)
    std::uint64_t last = 0;      // the fingerprint of the latest poll
  };
  static std::uint64_t fingerprint(const std::vector<std::filesystem::path>& paths);
  void poll();

  std::map<std::string, Entry> entries_;  // only the thread touches these after construction
  std::mutex mutex_;
  std::vector<std::string> changed_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace bulkhead
