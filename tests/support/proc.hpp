#pragma once
// /proc, read by tests that look at processes from outside: a file's text, a process's stat
// line, every process there is. One helper for every test (CMake: bulkhead_test_support).
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace bulkhead {

// Nothing when its process ended while being read: the read then fails with ESRCH, on which
// libstdc++'s filebuf throws (istreambuf_iterator does not catch it).
inline std::optional<std::string> read_proc_file(const std::string& path) {
  try {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  } catch (const std::ios_base::failure&) {
    return std::nullopt;
  }
}

// The pids of every process in /proc now (some may end while the caller looks at them).
inline std::vector<pid_t> proc_pids() {
  std::vector<pid_t> pids;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    pids.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return pids;
}

// /proc/<pid>/stat: its name, state, parent, process group and start time.
struct ProcStat {
  pid_t pid = 0, ppid = 0, pgid = 0;
  char state = '?';
  unsigned long long start = 0;  // start time since boot: tells a process from a later one with its pid
  std::string comm;
};

// Nothing when it has ended (or ends while being read).
inline std::optional<ProcStat> read_proc_stat(pid_t pid) {
  const auto read = read_proc_file("/proc/" + std::to_string(pid) + "/stat");
  if (!read) return std::nullopt;
  const std::string& text = *read;
  const auto open = text.find('('), close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 2 > text.size()) return std::nullopt;
  ProcStat p;
  p.pid = pid;
  p.comm = text.substr(open + 1, close - open - 1);
  std::istringstream rest(text.substr(close + 2));
  if (!(rest >> p.state >> p.ppid >> p.pgid)) return std::nullopt;
  std::string field;
  for (int i = 0; i < 16 && rest >> field; ++i) {  // fields 6..21
  }
  rest >> p.start;  // field 22
  return p;
}

// Every process there is now.
inline std::vector<ProcStat> all_proc_stats() {
  std::vector<ProcStat> out;
  for (pid_t pid : proc_pids())
    if (auto p = read_proc_stat(pid)) out.push_back(*p);
  return out;
}

// It runs: it exists and is not a zombie.
inline bool proc_alive(pid_t pid) {
  const auto p = read_proc_stat(pid);
  return p && p->state != 'Z';
}

}  // namespace bulkhead
