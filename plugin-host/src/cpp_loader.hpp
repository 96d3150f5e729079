// cpp_loader.hpp — serves a C++ plugin library inside this (already jailed) process.
#pragma once

#include <string>

namespace bulkhead::host {

// dlopens library, finds the plugin exported with BULKHEAD_PLUGIN, and serves it.
// Returns the process exit status (78 when the library cannot be loaded).
int serve_cpp_plugin(const std::string& library);

}  // namespace bulkhead::host
