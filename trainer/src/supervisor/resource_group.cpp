#include "supervisor/resource_group.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <bulkhead/warden_exit.hpp>

namespace bulkhead {
namespace fs = std::filesystem;

std::string TreeLimits::memory_reached() const {
  return "memory limit of " + std::to_string(memory_mb) + " MB reached by the plugin's processes together";
}
std::string TreeLimits::processes_reached() const {
  return "process limit of " + std::to_string(processes) + " reached by the plugin's processes together";
}
std::string TreeLimits::cpu_time_reached() const {
  return "CPU time limit of " + std::to_string(cpu_time_s) + " s reached by the plugin's processes together";
}
std::string TreeLimits::warden_reason(int exit_status) const {
  switch (exit_status) {
    case warden_exit::kMemory: return memory_reached();
    case warden_exit::kProcesses: return processes_reached();
    case warden_exit::kCpuTime: return cpu_time_reached();
    default: return "";
  }
}

namespace {

constexpr const char* kV1Controllers[] = {"memory", "pids", "cpuacct"};
constexpr const char* kV2Controllers[] = {"memory", "pids", "cpu"};
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

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

std::string joined(const std::vector<std::string>& items) {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : ", ") + item;
  return text;
}

// This process's own cgroup from /proc/self/cgroup: in the v1 hierarchy of `controller`
// ("4:memory:/a/b"), or in the v2 one for an empty `controller` ("0::/a/b").
fs::path own_cgroup(const std::string& controller) {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string names = line.substr(first + 1, second - first - 1);
    std::stringstream list(names);
    bool match = controller.empty() && names.empty() && line.compare(0, first, "0") == 0;
    for (std::string name; !match && std::getline(list, name, ',');) match = name == controller;
    if (match) return fs::path(line.substr(second + 1)).relative_path();
  }
  return {};
}

// The mount points of cgroup file systems of `type` ("cgroup" for v1, "cgroup2"): the fifth field
// of mountinfo, the type after " - ".
std::vector<fs::path> mounts_of(const std::string& type) {
  std::ifstream in("/proc/self/mountinfo");
  std::vector<fs::path> found;
  for (std::string line; std::getline(in, line);) {
    const auto dash = line.find(" - ");
    if (dash == std::string::npos || line.compare(dash + 3, type.size() + 1, type + " ") != 0) continue;
    std::istringstream fields(line);
    std::string id, parent, device, root, mount_point;
    fields >> id >> parent >> device >> root >> mount_point;
    found.push_back(mount_point);
  }
  return found;
}

bool pid_alive(long pid) { return pid > 0 && (::kill(pid_t(pid), 0) == 0 || errno != ESRCH); }

void remove_group(const fs::path& dir) {
  std::error_code ignored;
  for (const auto& child : fs::directory_iterator(dir, ignored))
    if (child.is_directory(ignored)) fs::remove(child.path(), ignored);
  fs::remove(dir, ignored);
}

// Folders left by trainers that were killed ("bulkhead-<pid>" of a pid no longer alive).
void remove_stale(const fs::path& parent) {
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(parent, ignored)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("bulkhead-", 0) == 0 && !pid_alive(std::atol(name.c_str() + 9))) remove_group(entry.path());
  }
}

std::string trainer_folder() { return "bulkhead-" + std::to_string(getpid()); }

// One folder per v1 controller for this trainer: <hierarchy>/<own cgroup>/bulkhead-<pid>.
struct V1Tree {
  std::vector<fs::path> dirs;
  std::string problem;

  V1Tree() {
    for (const char* controller : kV1Controllers) {
      const fs::path hierarchy = fs::path("/sys/fs/cgroup") / controller;
      const fs::path parent = hierarchy / own_cgroup(controller);
      if (!fs::exists(parent / "cgroup.procs")) {
        problem = "no cgroup v1 '" + std::string(controller) + "' hierarchy at " + hierarchy.string();
        return;
      }
      remove_stale(parent);
      const fs::path dir = parent / trainer_folder();
      std::error_code error;
      fs::create_directory(dir, error);
      if (error) {
        problem = "cannot create " + dir.string() + ": " + error.message();
        return;
      }
      dirs.push_back(dir);
    }
  }
  ~V1Tree() {
    for (const auto& dir : dirs) remove_group(dir);
  }
};

// The kind this trainer uses, chosen once: v1 where its three hierarchies are writable (as
// before, on machines that mount them), else v2 where a subtree is writable, else none.
struct Groups {
  std::unique_ptr<V1Tree> v1;
  std::unique_ptr<CgroupV2Tree> v2;
  std::string problem;

  Groups() {
    v1 = std::make_unique<V1Tree>();
    if (v1->problem.empty()) return;
    const std::string v1_problem = v1->problem;
    v1.reset();
    const fs::path own = ResourceGroup::own_cgroup2();
    if (own.empty()) {
      problem = v1_problem + ", and no cgroup2 file system is mounted";
      return;
    }
    v2 = std::make_unique<CgroupV2Tree>(own);
    if (v2->problem.empty()) return;
    problem = v1_problem + "; cgroup v2: " + v2->problem;
    v2.reset();
  }

  static Groups& instance() {
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    static Groups groups;
    return groups;
  }
};

}  // namespace

CgroupV2Tree::CgroupV2Tree(const fs::path& parent_dir) : parent(parent_dir), dir(parent_dir / trainer_folder()) {
  if (!fs::exists(parent / "cgroup.controllers")) {
    problem = "no cgroup v2 at " + parent.string();
    return;
  }
  remove_stale(parent);
  std::error_code error;
  fs::create_directory(dir, error);
  if (error) {
    problem = "cannot create " + dir.string() + ": " + error.message() +
              " (not delegated to this user: run it as `systemd-run --user --scope -p Delegate=yes bulkhead ...`)";
    return;
  }
  const auto available = words(read_file(parent / "cgroup.controllers"));
  std::vector<std::string> wanted;
  for (const char* c : kV2Controllers)
    if (std::find(available.begin(), available.end(), c) != available.end()) wanted.push_back(c);
  // A cgroup that holds processes (other than the root) cannot hand controllers to its children:
  // the trainer moves itself into a leaf of its own, dir/trainer, first.
  auto enable = [&](const fs::path& where, const std::string& controller) { return write_file(where / "cgroup.subtree_control", "+" + controller); };
  bool parent_ok = std::all_of(wanted.begin(), wanted.end(), [&](const auto& c) { return enable(parent, c); });
  if (!parent_ok && !wanted.empty()) {
    fs::create_directory(dir / "trainer", error);
    moved_trainer = !error && write_file(dir / "trainer" / "cgroup.procs", std::to_string(getpid()));
    parent_ok = moved_trainer && std::all_of(wanted.begin(), wanted.end(), [&](const auto& c) { return enable(parent, c); });
  }
  for (const auto& c : wanted)
    if (parent_ok && enable(dir, c)) controllers.push_back(c);
}

CgroupV2Tree::~CgroupV2Tree() {
  if (moved_trainer) write_file(parent / "cgroup.procs", std::to_string(getpid()));
  remove_group(dir);
}

std::string ResourceGroup::unavailable() { return Groups::instance().problem; }

fs::path ResourceGroup::own_cgroup2() {
  const auto found = mounts_of("cgroup2");
  return found.empty() ? fs::path() : found.front() / own_cgroup("");
}

std::string ResourceGroup::mounted() {
  const bool v1 = !mounts_of("cgroup").empty(), v2 = !mounts_of("cgroup2").empty();
  return v1 && v2 ? "v1 and v2 mounted" : v1 ? "v1 mounted" : v2 ? "v2 mounted" : "no cgroup file system mounted";
}

std::string ResourceGroup::layer() {
  const Groups& groups = Groups::instance();
  if (groups.v1) return "cgroup v1 (" + joined({std::begin(kV1Controllers), std::end(kV1Controllers)}) + ")";
  if (groups.v2) {
    const auto& tree = *groups.v2;
    const std::string kill = fs::exists(tree.dir / "cgroup.kill") ? ", cgroup.kill" : "";
    return "cgroup v2 at " + tree.dir.string() + " (" + (tree.controllers.empty() ? "no controller delegated" : joined(tree.controllers)) +
           "; CPU time from cpu.stat" + kill + ")";
  }
  return "none: " + groups.problem;
}

std::unique_ptr<ResourceGroup> ResourceGroup::create(const std::string& name, const TreeLimits& limits) {
  const Groups& groups = Groups::instance();
  if (groups.v2) return create_v2(*groups.v2, name, limits);
  if (!groups.v1) return nullptr;
  std::vector<fs::path> dirs;
  for (const auto& trainer_dir : groups.v1->dirs) {
    const fs::path dir = trainer_dir / name;
    std::error_code error;
    fs::create_directory(dir, error);
    if (error) {
      for (const auto& made : dirs) fs::remove(made, error);
      return nullptr;
    }
    dirs.push_back(dir);
  }
  return std::unique_ptr<ResourceGroup>(new ResourceGroup(1, std::move(dirs), {}, limits));
}

std::unique_ptr<ResourceGroup> ResourceGroup::create_v2(const CgroupV2Tree& tree, const std::string& name, const TreeLimits& limits) {
  if (!tree.problem.empty()) return nullptr;
  const fs::path dir = tree.dir / name;
  std::error_code error;
  fs::create_directory(dir, error);
  if (error) return nullptr;
  return std::unique_ptr<ResourceGroup>(new ResourceGroup(2, {dir}, tree.controllers, limits));
}

ResourceGroup::ResourceGroup(int version, std::vector<fs::path> dirs, std::vector<std::string> controllers, const TreeLimits& limits)
    : version_(version), dirs_(std::move(dirs)), controllers_(std::move(controllers)), limits_(limits) {
  const std::string memory = std::to_string(limits.memory_mb << 20), pids = std::to_string(limits.processes + kJailProcesses);
  if (version_ == 1) {
    write_file(dirs_[0] / "memory.limit_in_bytes", memory);
    write_file(dirs_[1] / "pids.max", pids);
  } else {
    if (has("memory")) write_file(dirs_[0] / "memory.max", memory);
    // Swap would let the tree hold more than memory.max; where the kernel has no swap control the file is absent.
    if (has("memory") && fs::exists(dirs_[0] / "memory.swap.max")) write_file(dirs_[0] / "memory.swap.max", "0");
    if (has("pids")) write_file(dirs_[0] / "pids.max", pids);
  }
  for (const auto& dir : dirs_) join_files_.push_back((dir / "cgroup.procs").string());
}

bool ResourceGroup::has(const std::string& controller) const {
  return std::find(controllers_.begin(), controllers_.end(), controller) != controllers_.end();
}

ResourceGroup::~ResourceGroup() {
  // The jail's processes die with their pid namespace, a moment after its init: wait for that.
  for (int attempt = 0; attempt < 200; ++attempt) {
    kill();
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

void ResourceGroup::kill() const {
  // cgroup.kill (Linux 5.14) kills the whole tree at once, forks racing with it included.
  if (version_ == 2 && fs::exists(dirs_[0] / "cgroup.kill") && write_file(dirs_[0] / "cgroup.kill", "1")) return;
  for (const auto& dir : dirs_) {
    std::istringstream pids(read_file(dir / "cgroup.procs"));
    for (long pid; pids >> pid;) ::kill(pid_t(pid), SIGKILL);
  }
}

std::string ResourceGroup::breach() const { return version_ == 1 ? breach_v1() : breach_v2(); }

std::string ResourceGroup::breach_v1() const {
  if (field(read_file(dirs_[0] / "memory.oom_control"), "oom_kill") > 0) return limits_.memory_reached();
  if (field(read_file(dirs_[1] / "pids.events"), "max") > 0) return limits_.processes_reached();
  const long long cpu_ns = std::atoll(read_file(dirs_[2] / "cpuacct.usage").c_str());
  if (cpu_ns > std::int64_t(limits_.cpu_time_s) * 1000000000LL) return limits_.cpu_time_reached();
  return "";
}

std::string ResourceGroup::breach_v2() const {
  const fs::path& dir = dirs_[0];
  if (has("memory") && field(read_file(dir / "memory.events"), "oom_kill") > 0) return limits_.memory_reached();
  if (has("pids") && field(read_file(dir / "pids.events"), "max") > 0) return limits_.processes_reached();
  // cpu.stat's usage_usec is kept for every cgroup, with or without the cpu controller.
  if (field(read_file(dir / "cpu.stat"), "usage_usec") > std::int64_t(limits_.cpu_time_s) * 1000000LL) return limits_.cpu_time_reached();
  return "";
}

}  // namespace bulkhead
