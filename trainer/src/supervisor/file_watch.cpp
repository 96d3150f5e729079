#include "supervisor/file_watch.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <utility>

namespace bulkhead {
namespace fs = std::filesystem;
namespace {

constexpr auto kPollEvery = std::chrono::milliseconds(500);

// Caches and dependencies change without the plugin's code changing.
bool skipped(const fs::path& dir) {
  const std::string name = dir.filename().string();
  return name == "__pycache__" || name == "node_modules" || name == ".git";
}

void mix(std::uint64_t& hash, std::uint64_t value) { hash = (hash ^ value) * 1099511628211ULL; }  // FNV-1a step

void mix_file(std::uint64_t& hash, const fs::path& file) {
  std::error_code error;
  mix(hash, std::hash<std::string>{}(file.string()));
  mix(hash, static_cast<std::uint64_t>(fs::file_size(file, error)));
  mix(hash, static_cast<std::uint64_t>(fs::last_write_time(file, error).time_since_epoch().count()));
}

}  // namespace

FileWatch::FileWatch(std::map<std::string, std::vector<fs::path>> watched) {
  for (auto& [key, paths] : watched) {
    const std::uint64_t now = fingerprint(paths);
    entries_[key] = Entry{std::move(paths), now, now};
  }
  thread_ = std::thread([this] {
    while (!stopping_) {
      std::this_thread::sleep_for(kPollEvery);
      poll();
    }
  });
}

FileWatch::~FileWatch() {
  stopping_ = true;
  thread_.join();
}

std::uint64_t FileWatch::fingerprint(const std::vector<fs::path>& paths) {
  std::uint64_t hash = 14695981039346656037ULL;
  for (const auto& path : paths) {
    std::error_code error;
    if (fs::is_regular_file(path, error)) {
      mix_file(hash, path);
      continue;
    }
    std::vector<fs::path> files;
    for (auto it = fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied, error);
         !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
      if (it->is_directory(error) && skipped(it->path())) it.disable_recursion_pending();
      else if (it->is_regular_file(error)) files.push_back(it->path());
    }
    std::sort(files.begin(), files.end());  // the directory's order is not stable
    for (const auto& file : files) mix_file(hash, file);
  }
  return hash;
}

void FileWatch::poll() {
  for (auto& [key, entry] : entries_) {
    const std::uint64_t now = fingerprint(entry.paths);
    const bool settled = now == entry.last;
    entry.last = now;
    if (!settled || now == entry.reported) continue;
    entry.reported = now;
    std::lock_guard<std::mutex> lock(mutex_);
    if (std::find(changed_.begin(), changed_.end(), key) == changed_.end()) changed_.push_back(key);
  }
}

std::vector<std::string> FileWatch::take_changed() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(changed_, {});
}

}  // namespace bulkhead
