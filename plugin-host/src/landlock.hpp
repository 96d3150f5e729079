// landlock.hpp — file-system, network and signal rules the kernel keeps for this process and
// everything it starts, where the kernel has Landlock (Linux 5.13+; TCP rules 6.7+, scopes 6.12+).
#pragma once

#include <string>
#include <vector>

namespace bulkhead::host {

// Reads and executes anywhere it can see; writes only under `writable`; no TCP bind or connect
// unless `network`; no signal to, and no abstract socket of, a process outside this domain (the
// trainer, other plugins). Returns the Landlock ABI version applied, or 0 where the kernel has no
// Landlock (nothing applied). Throws std::runtime_error when the kernel has it and it fails.
int restrict_with_landlock(const std::vector<std::string>& writable, bool network);

}  // namespace bulkhead::host
