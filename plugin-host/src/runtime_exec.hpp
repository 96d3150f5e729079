// runtime_exec.hpp — replaces this (already jailed) process with another runtime's plugin host.
#pragma once

#include <string>

namespace bulkhead::host {

// runtime is "python", "node" or "exec". Sets BULKHEAD_ENTRY and the runtime's module path,
// then execs; returns only on failure, with the exit status to use (78).
int exec_runtime(const std::string& runtime, const std::string& entry, const std::string& plugin_dir);

}  // namespace bulkhead::host
