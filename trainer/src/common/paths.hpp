// paths.hpp — where Bulkhead's own files are.
#pragma once

#include <filesystem>

namespace bulkhead::paths {

// The folder holding schemas/, plugins/ and plugin-sdk/: $BULKHEAD_HOME, else the source tree it was built from.
std::filesystem::path home();
// The folder holding this program (build/bin).
std::filesystem::path executable_dir();
// Where C++ plugin libraries are built (build/lib).
std::filesystem::path library_dir();
// The plugin host executable beside this program.
std::filesystem::path plugin_host();

}  // namespace bulkhead::paths
