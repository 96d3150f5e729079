#include "common/paths.hpp"

#include <unistd.h>

#include <cstdlib>

namespace bulkhead::paths {

std::filesystem::path home() {
  if (const char* home = std::getenv("BULKHEAD_HOME"); home != nullptr && *home != '\0') return home;
  return BULKHEAD_SOURCE_DIR;
}

std::filesystem::path executable_dir() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path();
}

std::filesystem::path library_dir() { return executable_dir().parent_path() / "lib"; }

std::filesystem::path plugin_host() { return executable_dir() / "bulkhead-plugin-host"; }

}  // namespace bulkhead::paths
