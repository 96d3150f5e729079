#include "train/run_folder.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <set>
#include <vector>

#include "train/config.hpp"

namespace bulkhead {
namespace fs = std::filesystem;
namespace {

constexpr const char* kLockName = ".lock";

std::string timestamp() {
  std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", std::localtime(&now));
  return text;
}

std::string lock_holder(const fs::path& lock_file) {
  std::ifstream in(lock_file);
  std::string pid;
  std::getline(in, pid);
  return pid.empty() ? "unknown pid" : "pid " + pid;
}

// The lock is held until lock_fd is closed: by ~RunFolder, or by the kernel when the process ends.
int take_lock(const fs::path& folder) {
  const fs::path lock_file = folder / kLockName;
  // O_CLOEXEC: plugin hosts started by this trainer must not inherit (and outlive it holding) the lock.
  const int fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw ConfigError("run folder " + folder.string() + ": cannot create its lock file: " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd);
    if (error == EWOULDBLOCK)
      throw ConfigError("run folder " + folder.string() + " is in use by another trainer (" + lock_holder(lock_file) +
                        "); wait for it to end or choose another --run-dir");
    throw ConfigError("run folder " + folder.string() + ": cannot lock it: " + std::strerror(error));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    throw ConfigError("run folder " + folder.string() + ": cannot write its lock file: " + std::strerror(errno));
  return fd;
}

// What a start leaves before the first step: a start that failed on its data leaves these, and the
// user who fixes the data and starts again must not be told the folder "holds a run".
// A study's folder (docs/methods.md) starts with study.log and an empty trials/.
const std::set<std::string> kStartFiles = {kLockName, "config.json", "train.log", "metrics.jsonl", "tensorboard",
                                           "checkpoints", "samples", "control", "plugin-scratch", "plugin-report.json",
                                           "plugin-report.live.json", "study.log", "trials", "ranks"};

bool holds_nothing(const fs::path& path) {
  return fs::is_directory(path) ? fs::is_empty(path) : fs::is_regular_file(path) && fs::file_size(path) == 0;
}

// What shows that a run trained here: a step's metrics, a checkpoint, a sample; or a file that is no run's.
std::vector<fs::path> earlier_run(const fs::path& folder) {
  std::vector<fs::path> found;
  for (auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    const bool trained =
        (name == "metrics.jsonl" || name == "checkpoints" || name == "samples" || name == "trials") &&
        !holds_nothing(entry.path());
    if (trained || !kStartFiles.count(name)) found.push_back(entry.path());
  }
  return found;
}

void check_mode(const fs::path& folder, RunFolder::Mode mode) {
  if (mode == RunFolder::Mode::resume) return;
  if (mode == RunFolder::Mode::overwrite) {
    for (auto& entry : fs::directory_iterator(folder))
      if (entry.path().filename() != kLockName) fs::remove_all(entry.path());
    return;
  }
  auto found = earlier_run(folder);
  if (found.empty()) return;
  throw ConfigError("run folder " + folder.string() + " already holds a run (" + found.front().filename().string() +
                    (found.size() > 1 ? " and " + std::to_string(found.size() - 1) + " more" : "") +
                    "): continue it with --resume " + folder.string() +
                    ", choose another --run-dir, or start over with --overwrite (deletes the earlier run)");
}

}  // namespace

bool RunFolder::in_use(const fs::path& path) {
  const int fd = ::open((path / kLockName).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  // flock locks belong to open files, not processes: this probe conflicts with a trainer's lock
  // even in the trainer's own process (bulkhead train --web).
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // drops the probe's own shared lock, if it got one
  return held;
}

RunFolder RunFolder::claim(const fs::path& path, Mode mode) {
  std::error_code error;
  fs::create_directories(path, error);
  if (error) throw ConfigError("run folder " + path.string() + ": cannot create it: " + error.message());
  // A study's folder (study.json) is resumed as a whole; its trials are run folders of their own.
  if (mode == Mode::resume && !fs::exists(path / "checkpoints") && !fs::exists(path / "study.json"))
    throw ConfigError("run folder " + path.string() + " holds no run to resume");
  RunFolder folder(path, take_lock(path));
  check_mode(path, mode);
  return folder;
}

RunFolder RunFolder::held_by_parent(const fs::path& path) {
  const std::string parent = "pid " + std::to_string(::getppid());
  if (!in_use(path) || lock_holder(path / kLockName) != parent)
    throw ConfigError("run folder " + path.string() + " is not held by this rank's launcher (" + parent +
                      "): ranks are started by bulkhead train --nproc, not by hand");
  return RunFolder(path, -1);
}

RunFolder RunFolder::claim_new(const fs::path& logdir, const std::string& project_name) {
  std::error_code error;
  fs::create_directories(logdir, error);
  if (error) throw ConfigError("logdir " + logdir.string() + ": cannot create it: " + error.message());
  const std::string base = project_name + "-" + timestamp();
  // create_directory is atomic: of two trainers started in the same second, one gets base, the other base-2.
  for (int n = 1; n < 10000; ++n) {
    const fs::path path = logdir / (n == 1 ? base : base + "-" + std::to_string(n));
    if (fs::create_directory(path, error)) return claim(path, Mode::fresh);
    if (error) throw ConfigError("logdir " + logdir.string() + ": cannot create " + path.string() + ": " + error.message());
  }
  throw ConfigError("logdir " + logdir.string() + ": every name for " + base + " is taken");
}

RunFolder::RunFolder(RunFolder&& other) noexcept : path_(std::move(other.path_)), lock_fd_(other.lock_fd_) {
  other.lock_fd_ = -1;
}

RunFolder& RunFolder::operator=(RunFolder&& other) noexcept {
  if (this != &other) {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    path_ = std::move(other.path_);
    lock_fd_ = other.lock_fd_;
    other.lock_fd_ = -1;
  }
  return *this;
}

RunFolder::~RunFolder() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::vector<fs::path> RunFolder::remove_stale_temporaries() const {
  std::vector<fs::path> removed;
  for (const fs::path& folder : {path_, path_ / "checkpoints", path_ / "samples"}) {
    if (!fs::is_directory(folder)) continue;
    for (auto& entry : fs::directory_iterator(folder))
      if (entry.is_regular_file() && entry.path().extension() == ".tmp") removed.push_back(entry.path());
  }
  for (auto& path : removed) fs::remove(path);
  return removed;
}

}  // namespace bulkhead
