// test_support.hpp — shared helpers for tests that start real plugin hosts.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/paths.hpp"

namespace bulkhead::test {

inline std::filesystem::path bin_dir() {
  const char* dir = std::getenv("BULKHEAD_BIN_DIR");
  return dir != nullptr ? dir : paths::executable_dir();
}

inline std::filesystem::path test_plugin(const std::string& name) {
  return paths::home() / "tests" / "plugins" / name;
}

struct CommandResult {
  int status = -1;
  std::string output;
};

// Runs a shell command, capturing stdout and stderr together.
inline CommandResult run(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace bulkhead::test
