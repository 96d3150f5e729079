// tree_usage.hpp — what a plugin's whole process tree uses, counted by its warden from /proc.
//
// The floor under every other whole-tree limit: it needs no cgroup, no root and no systemd, so
// it holds for an ordinary user and on any cgroup version (docs/sandbox.md). The tree is the
// warden's process group, which no descendant can leave (seccomp refuses setsid and setpgid).
#pragma once

#include <sys/types.h>

#include <string>

namespace bulkhead::host {

// The whole tree's limits; 0: no limit of that kind.
struct TreeBudget {
  long memory_mb = 0;
  long cpu_time_s = 0;
  long processes = 0;  // processes and threads
};

struct TreeUsage {
  long long cpu_ms = 0;          // CPU time of every live process, with what each reaped of its children
  long long resident_bytes = 0;  // anonymous and shared memory resident, summed over processes
  long tasks = 0;                // threads of every process (a process is at least one)
};

// The processes of process group `group` except `self` (the warden), from /proc.
TreeUsage measure_group(pid_t group, pid_t self);

// SIGKILL to every process of `group` except `self`.
void kill_group_except(pid_t group, pid_t self);

// The warden_exit status for the first limit `usage` (plus `reaped_cpu_ms`, the CPU time of the
// children the warden itself reaped) is past, with a line saying so in `why`; 0 when within.
int over_budget(const TreeUsage& usage, long long reaped_cpu_ms, const TreeBudget& budget, std::string& why);

}  // namespace bulkhead::host
