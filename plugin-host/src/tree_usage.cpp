#include "tree_usage.hpp"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>

#include <bulkhead/proc_stat.hpp>
#include <bulkhead/warden_exit.hpp>

namespace bulkhead::host {
namespace {

struct ProcessStat {
  long pgrp = 0;
  unsigned long long own_ticks = 0, children_ticks = 0;
  long threads = 0;
};

// "state ppid pgrp ... utime stime cutime cstime priority nice num_threads ...".
bool read_stat(const std::string& pid, ProcessStat& out) {
  const std::string fields = proc_stat_fields(pid);
  if (fields.empty()) return false;
  char state = 0;
  long ppid = 0;
  unsigned long long utime = 0, stime = 0;
  long long cutime = 0, cstime = 0;
  const int read = std::sscanf(fields.c_str(),
                               " %c %ld %ld %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld %*d %*d %ld", &state, &ppid,
                               &out.pgrp, &utime, &stime, &cutime, &cstime, &out.threads);
  out.own_ticks = utime + stime;
  out.children_ticks = static_cast<unsigned long long>(cutime + cstime);
  return read == 8;
}

// RssAnon and RssShmem: memory the process holds itself. Library and file pages are the page
// cache's, which the kernel may drop, and are left out.
long long resident_bytes(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/status");
  long long kb = 0;
  for (std::string line; std::getline(in, line);)
    if (line.rfind("RssAnon:", 0) == 0 || line.rfind("RssShmem:", 0) == 0) kb += std::atoll(line.c_str() + 9);
  return kb * 1024;
}

// Calls `visit` with the pid and stat of each process of `group` but `self`.
void for_each_in_group(pid_t group, pid_t self, const std::function<void(const std::string&, const ProcessStat&)>& visit) {
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return;
  while (dirent* entry = readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == self) continue;
    ProcessStat stat;
    if (read_stat(entry->d_name, stat) && stat.pgrp == group) visit(entry->d_name, stat);
  }
  closedir(proc);
}

}  // namespace

TreeUsage measure_group(pid_t group, pid_t self) {
  static const long ticks_per_second = sysconf(_SC_CLK_TCK);
  TreeUsage usage;
  unsigned long long ticks = 0;
  for_each_in_group(group, self, [&](const std::string& pid, const ProcessStat& stat) {
    ticks += stat.own_ticks + stat.children_ticks;
    usage.tasks += stat.threads > 0 ? stat.threads : 1;
    usage.resident_bytes += resident_bytes(pid);
  });
  usage.cpu_ms = static_cast<long long>(ticks * 1000 / ticks_per_second);
  return usage;
}

void kill_group_except(pid_t group, pid_t self) {
  for_each_in_group(group, self, [](const std::string& pid, const ProcessStat&) { ::kill(std::atoi(pid.c_str()), SIGKILL); });
}

int over_budget(const TreeUsage& usage, long long reaped_cpu_ms, const TreeBudget& budget, std::string& why) {
  if (budget.memory_mb > 0 && usage.resident_bytes > (static_cast<long long>(budget.memory_mb) << 20)) {
    why = "memory of the plugin's processes together (" + std::to_string(usage.resident_bytes >> 20) + " MB) past " +
          std::to_string(budget.memory_mb) + " MB";
    return warden_exit::kMemory;
  }
  if (budget.processes > 0 && usage.tasks > budget.processes) {
    why = "processes and threads of the plugin together (" + std::to_string(usage.tasks) + ") past " +
          std::to_string(budget.processes);
    return warden_exit::kProcesses;
  }
  const long long cpu_ms = usage.cpu_ms + reaped_cpu_ms;
  if (budget.cpu_time_s > 0 && cpu_ms > budget.cpu_time_s * 1000LL) {
    why = "CPU time of the plugin's processes together (" + std::to_string(cpu_ms) + " ms) past " +
          std::to_string(budget.cpu_time_s) + " s";
    return warden_exit::kCpuTime;
  }
  return 0;
}

}  // namespace bulkhead::host
