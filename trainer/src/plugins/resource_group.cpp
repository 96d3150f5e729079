#include "plugins/resource_group.hpp"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace bulkhead {
namespace fs = std::filesystem;

namespace {

constexpr const char* kControllers[] = {"memory", "pids", "cpuacct"};
// The warden-to-be, bubblewrap's monitor and its init: processes the plugin did not start.
constexpr int kJailProcesses = 3;

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return bool(out);
}

// "oom_kill 3" out of a "key value" file; 0 when absent.
long long field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string name;
  long long value = 0;
  while (in >> name >> value)
    if (name == key) return value;
  return 0;
}

// This process's own cgroup in a v1 hierarchy, from /proc/self/cgroup ("4:memory:/a/b").
fs::path own_cgroup(const std::string& controller) {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    std::stringstream list(line.substr(first + 1, second - first - 1));
    for (std::string name; std::getline(list, name, ',');)
      if (name == controller) return fs::path(line.substr(second + 1)).relative_path();
  }
  return {};
}

bool pid_alive(long pid) { return pid > 0 && (::kill(pid_t(pid), 0) == 0 || errno != ESRCH); }

void remove_group(const fs::path& dir) {
  std::error_code ignored;
  for (const auto& child : fs::directory_iterator(dir, ignored))
    if (child.is_directory(ignored)) fs::remove(child.path(), ignored);
  fs::remove(dir, ignored);
}

// One folder per trainer and controller: <hierarchy>/<own cgroup>/bulkhead-<pid>. Folders left by
// trainers that were killed are removed the first time.
struct TrainerGroups {
  std::vector<fs::path> dirs;
  std::string problem;

  TrainerGroups() {
    for (const char* controller : kControllers) {
      const fs::path hierarchy = fs::path("/sys/fs/cgroup") / controller;
      const fs::path parent = hierarchy / own_cgroup(controller);
      if (!fs::exists(parent / "cgroup.procs")) {
        problem = "no cgroup v1 '" + std::string(controller) + "' hierarchy at " + hierarchy.string();
        return;
      }
      remove_stale(parent);
      const fs::path dir = parent / ("bulkhead-" + std::to_string(getpid()));
      std::error_code error;
      fs::create_directory(dir, error);
      if (error) {
        problem = "cannot create " + dir.string() + ": " + error.message();
        return;
      }
      dirs.push_back(dir);
    }
  }
  ~TrainerGroups() {
    for (const auto& dir : dirs) remove_group(dir);
  }

  static void remove_stale(const fs::path& parent) {
    std::error_code ignored;
    for (const auto& entry : fs::directory_iterator(parent, ignored)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("bulkhead-", 0) == 0 && !pid_alive(std::atol(name.c_str() + 9))) remove_group(entry.path());
    }
  }

  static TrainerGroups& instance() {
    static TrainerGroups groups;
    return groups;
  }
};

}  // namespace

std::string ResourceGroup::unavailable() {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  return TrainerGroups::instance().problem;
}

std::unique_ptr<ResourceGroup> ResourceGroup::create(const std::string& name, const TreeLimits& limits) {
  if (!unavailable().empty()) return nullptr;
  std::vector<fs::path> dirs;
  for (const auto& trainer_dir : TrainerGroups::instance().dirs) {
    const fs::path dir = trainer_dir / name;
    std::error_code error;
    fs::create_directory(dir, error);
    if (error) {
      for (const auto& made : dirs) fs::remove(made, error);
      return nullptr;
    }
    dirs.push_back(dir);
  }
  return std::unique_ptr<ResourceGroup>(new ResourceGroup(std::move(dirs), limits));
}

ResourceGroup::ResourceGroup(std::vector<fs::path> dirs, const TreeLimits& limits) : dirs_(std::move(dirs)), limits_(limits) {
  write_file(dirs_[0] / "memory.limit_in_bytes", std::to_string(limits.memory_mb << 20));
  write_file(dirs_[1] / "pids.max", std::to_string(limits.processes + kJailProcesses));
  for (const auto& dir : dirs_) join_files_.push_back((dir / "cgroup.procs").string());
}

ResourceGroup::~ResourceGroup() {
  // The jail's processes die with their pid namespace, a moment after its init: wait for that.
  for (int attempt = 0; attempt < 200; ++attempt) {
    kill_members();
    bool removed = true;
    for (const auto& dir : dirs_) {
      std::error_code error;
      fs::remove(dir, error);
      removed = removed && !fs::exists(dir, error);
    }
    if (removed) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void ResourceGroup::kill_members() const {
  for (const auto& dir : dirs_) {
    std::istringstream pids(read_file(dir / "cgroup.procs"));
    for (long pid; pids >> pid;) ::kill(pid_t(pid), SIGKILL);
  }
}

std::string ResourceGroup::breach() const {
  if (field(read_file(dirs_[0] / "memory.oom_control"), "oom_kill") > 0)
    return "memory limit of " + std::to_string(limits_.memory_mb) + " MB reached by the plugin's processes together";
  if (field(read_file(dirs_[1] / "pids.events"), "max") > 0)
    return "process limit of " + std::to_string(limits_.processes) + " reached by the plugin's processes together";
  const long long cpu_ns = std::atoll(read_file(dirs_[2] / "cpuacct.usage").c_str());
  if (cpu_ns > std::int64_t(limits_.cpu_time_s) * 1000000000LL)
    return "CPU time limit of " + std::to_string(limits_.cpu_time_s) + " s reached by the plugin's processes together";
  return "";
}

}  // namespace bulkhead
