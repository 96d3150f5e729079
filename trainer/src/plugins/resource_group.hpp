// resource_group.hpp — limits that hold for a plugin's whole process tree: a cgroup per host start.
//
//   auto group = ResourceGroup::create("caption_case_js-3", limits);   // null where cgroups cannot be used
//   // the child writes "0" to each of group->join_files() before exec, so every descendant is inside
//   if (auto why = group->breach(); !why.empty()) kill(...);           // polled by the supervisor
//
// rlimits count one process at a time (four children each under a 512 MB address space use 2 GB,
// six children each under a 2 s CPU limit use 12 s); a cgroup counts them together. The trainer
// needs write access to the cgroup v1 memory, pids and cpuacct hierarchies (root, usually); where
// it has none, per-process limits and the user namespace's process count are what holds
// (docs/sandbox.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace bulkhead {

struct TreeLimits {
  std::int64_t memory_mb = 2048;
  int processes = 64;
  int cpu_time_s = 3600;
};

class ResourceGroup {
 public:
  // A group named `name` under this trainer's own, or null when cgroups cannot be used here.
  static std::unique_ptr<ResourceGroup> create(const std::string& name, const TreeLimits& limits);
  // Why whole-tree limits are not enforced on this machine, or empty when they are.
  static std::string unavailable();

  ~ResourceGroup();  // kills whatever is still inside, then removes the group
  ResourceGroup(const ResourceGroup&) = delete;
  ResourceGroup& operator=(const ResourceGroup&) = delete;

  // The cgroup.procs files a new process joins by writing "0" to each (only open and write:
  // safe between fork and exec).
  const std::vector<std::string>& join_files() const { return join_files_; }
  // Empty while the tree is within its limits, else which limit it went past
  // ("memory limit of 512 MB reached by the plugin's processes together").
  std::string breach() const;

 private:
  ResourceGroup(std::vector<std::filesystem::path> dirs, const TreeLimits& limits);
  void kill_members() const;

  std::vector<std::filesystem::path> dirs_;  // memory, pids, cpuacct
  std::vector<std::string> join_files_;
  TreeLimits limits_;
};

}  // namespace bulkhead
