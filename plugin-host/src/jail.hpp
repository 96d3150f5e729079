// jail.hpp — turns this process into a plugin jail before any plugin code runs.
//
// The outer walls (namespaces, the file-system view, cgroups) are built by the trainer with
// bubblewrap before this process starts (docs/sandbox.md); what is set up here holds from the
// inside and survives fork and exec: the plugin's own identity, limits, no-new-privs and seccomp.
#pragma once

#include <string>
#include <vector>

namespace bulkhead::host {

struct JailLimits {
  long address_space_mb = 4096;
  long cpu_time_s = 3600;
  long open_files = 256;
  long processes = 64;
};

struct JailPolicy {
  JailLimits limits;
  int trainer_pid = 0;     // >0: die when the trainer does (the unjailed "weak" mode; in the full jail the pid namespace does it)
  int plugin_uid = -1;     // >=0 and running as root: become this user, then enter a user namespace of its own
  int plugin_gid = -1;
  bool network = false;    // granted: network sockets (AF_INET, AF_INET6, AF_NETLINK) are allowed
  std::vector<std::string> writable;  // the only places it may write (Landlock, where the kernel has it)
};

// Own process group, death with the trainer, the plugin's own unprivileged identity (when the
// trainer is root), no capabilities, no core dumps, resource limits, no-new-privs, Landlock rules
// (landlock.hpp) and a seccomp filter (seccomp_filter.hpp). Throws std::runtime_error naming the
// step that failed.
void enter_jail(const JailPolicy& policy);

}  // namespace bulkhead::host
