// run_folder.hpp — a run folder belongs to one run.
//
//   RunFolder folder = RunFolder::claim("runs/try1", RunFolder::Mode::fresh);   // or Mode::resume / Mode::overwrite
//   RunFolder folder = RunFolder::claim_new("runs", "mine");                  // runs/mine-20261201-135201[-2]
//
// Claiming takes an exclusive lock (flock on <folder>/.lock, which names the
// holder's pid) for the RunFolder's life, so a second trainer on the same folder
// is refused instead of mixing its files into the first one's. The kernel
// drops the lock when the process ends, however it ends. A fresh run refuses a
// folder that holds an earlier run (a trained step, a checkpoint, a sample) or
// files that are no run's; what a start that failed before its first step left
// (config.json, train.log) does not count. A resumed run takes its own folder back.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace bulkhead {

class RunFolder {
 public:
  enum class Mode {
    fresh,      // the folder must be absent, empty, or left by a start that never trained
    resume,     // the folder continues its own run
    overwrite,  // the user said so: the earlier run's files are deleted first
  };

  // Throws ConfigError when the folder is locked by another trainer, or holds a run that Mode does not allow.
  static RunFolder claim(const std::filesystem::path& path, Mode mode);
  // <logdir>/<project_name>-<YYYYmmdd-HHMMSS>, with -2, -3... when that name is taken: never an existing folder.
  static RunFolder claim_new(const std::filesystem::path& logdir, const std::string& project_name);

  // A data-parallel rank's view of the folder its launcher (bulkhead train --nproc) claimed and
  // holds for the whole run, restarts included. Throws ConfigError unless the parent holds it.
  static RunFolder held_by_parent(const std::filesystem::path& path);

  // True while a trainer holds the folder: one is running there and takes its control requests.
  static bool in_use(const std::filesystem::path& path);

  RunFolder(RunFolder&& other) noexcept;
  RunFolder& operator=(RunFolder&& other) noexcept;
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;
  ~RunFolder();

  const std::filesystem::path& path() const { return path_; }

  // Deletes *.tmp files that a crashed run of this folder left behind (safe: the lock is ours). Returns them.
  std::vector<std::filesystem::path> remove_stale_temporaries() const;

 private:
  RunFolder(std::filesystem::path path, int lock_fd) : path_(std::move(path)), lock_fd_(lock_fd) {}
  std::filesystem::path path_;
  int lock_fd_ = -1;
};

}  // namespace bulkhead
