// proc_stat.hpp — a process's /proc/<pid>/stat from its state field on. The command name before it
// may hold spaces and parentheses, so the fields start after the last ')'. Shared by
// bulkhead-plugin-host's warden and the trainer; not for plugins.
#pragma once

#include <fstream>
#include <string>

namespace bulkhead {

// "state ppid pgrp ...", or empty when the process is gone.
inline std::string proc_stat_fields(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/stat");
  std::string line;
  if (!std::getline(in, line)) return "";
  const auto close = line.rfind(')');
  return close == std::string::npos ? "" : line.substr(close + 1);
}

}  // namespace bulkhead
