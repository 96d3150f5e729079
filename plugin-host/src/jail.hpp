// jail.hpp — turns this process into a plugin jail before any plugin code runs.
#pragma once

namespace bulkhead::host {

struct JailLimits {
  long address_space_mb = 4096;
  long cpu_time_s = 3600;
  long open_files = 256;
  long processes = 64;
};

// Own process group, death with the trainer (parent-death signal, and a check that the
// parent is still the trainer), no core dumps, resource limits, no-new-privs, and a seccomp
// filter that refuses network sockets and leaving the process group. Survives fork and exec. Throws std::runtime_error on failure.
void enter_jail(const JailLimits& limits, int trainer_pid);

}  // namespace bulkhead::host
