// resource_group.hpp — limits that hold for a plugin's whole process tree: a cgroup per host start.
//
//   auto group = ResourceGroup::create("caption_case_js-3", limits);   // null where cgroups cannot be used
//   // the child writes "0" to each of group->join_files() before exec, so every descendant is inside
//   if (auto why = group->breach(); !why.empty()) group->kill();      // polled by the supervisor
//
// rlimits count one process at a time (four children each under a 512 MB address space use 2 GB,
// six children each under a 2 s CPU limit use 12 s); a cgroup counts them together. Two kinds:
//  - cgroup v1: the memory, pids and cpuacct hierarchies, where this trainer may write them (root);
//  - cgroup v2: a subtree this trainer may write (root, a delegated systemd scope, a container's
//    own cgroup): bulkhead-<pid>/ with one child per host, memory.max, memory.swap.max, pids.max
//    for the controllers delegated to it, CPU time from cpu.stat, the tree killed by cgroup.kill.
// Under every kind, and where there is none, the host's warden counts the tree itself from /proc
// (plugin-host/src/tree_usage.hpp); warden_reason() names what it stopped (docs/sandbox.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "supervisor/plugin_settings.hpp"

namespace bulkhead {

// What the whole tree may use; the defaults are PluginLimits' (a plugin entry's "limits").
struct TreeLimits {
  std::int64_t memory_mb = PluginLimits{}.memory_mb;
  int processes = PluginLimits{}.processes;
  int cpu_time_s = PluginLimits{}.cpu_time_s;

  // "memory limit of 512 MB reached by the plugin's processes together", and the others: the
  // same words whichever layer noticed.
  std::string memory_reached() const;
  std::string processes_reached() const;
  std::string cpu_time_reached() const;
  // The limit named by a host's exit status when its warden killed the tree for it
  // (bulkhead/warden_exit.hpp); empty for any other status.
  std::string warden_reason(int exit_status) const;
};

// A cgroup v2 subtree for this trainer's plugins: <parent>/bulkhead-<pid>, with the controllers
// (of memory, pids, cpu) it could enable for the groups inside. `parent` is a folder of a cgroup2
// mount (or, in tests, a folder holding the same files).
struct CgroupV2Tree {
  explicit CgroupV2Tree(const std::filesystem::path& parent);
  ~CgroupV2Tree();
  CgroupV2Tree(const CgroupV2Tree&) = delete;
  CgroupV2Tree& operator=(const CgroupV2Tree&) = delete;

  std::filesystem::path parent, dir;
  std::vector<std::string> controllers;  // enabled for the groups inside dir
  std::string problem;                   // empty when dir can hold plugin groups
  bool moved_trainer = false;            // the trainer moved itself into dir/trainer (parent held processes)
};

class ResourceGroup {
 public:
  // A group named `name` under this trainer's own, or null when cgroups cannot be used here.
  static std::unique_ptr<ResourceGroup> create(const std::string& name, const TreeLimits& limits);
  // The same inside a given cgroup v2 tree (tests use one of their own).
  static std::unique_ptr<ResourceGroup> create_v2(const CgroupV2Tree& tree, const std::string& name, const TreeLimits& limits);
  // Why whole-tree limits are not enforced by cgroups on this machine, or empty when they are.
  static std::string unavailable();
  // Which cgroups hold plugins here: "cgroup v1 (memory, pids, cpuacct)", "cgroup v2 at
  // /sys/fs/cgroup/user.slice/... (memory, pids, cpu; CPU time from cpu.stat, cgroup.kill)", or
  // "none: " and why.
  static std::string layer();
  // This process's own cgroup in the cgroup2 file system (/sys/fs/cgroup/user.slice/...), or
  // empty where none is mounted.
  static std::filesystem::path own_cgroup2();
  // Which versions this machine mounts: "v1 mounted", "v2 mounted", "v1 and v2 mounted".
  static std::string mounted();

  ~ResourceGroup();  // kills whatever is still inside, then removes the group
  ResourceGroup(const ResourceGroup&) = delete;
  ResourceGroup& operator=(const ResourceGroup&) = delete;

  // The cgroup.procs files a new process joins by writing "0" to each (only open and write:
  // safe between fork and exec).
  const std::vector<std::string>& join_files() const { return join_files_; }
  // Empty while the tree is within its limits, else which limit it went past
  // ("memory limit of 512 MB reached by the plugin's processes together").
  std::string breach() const;
  // SIGKILL to every process inside (cgroup.kill on v2, where the kernel has it).
  void kill() const;

 private:
  ResourceGroup(int version, std::vector<std::filesystem::path> dirs, std::vector<std::string> controllers, const TreeLimits& limits);
  std::string breach_v1() const;
  std::string breach_v2() const;
  bool has(const std::string& controller) const;

  int version_;
  std::vector<std::filesystem::path> dirs_;  // v1: memory, pids, cpuacct; v2: the one group
  std::vector<std::string> controllers_;    // v2: those enabled for it
  std::vector<std::string> join_files_;
  TreeLimits limits_;
};

}  // namespace bulkhead
