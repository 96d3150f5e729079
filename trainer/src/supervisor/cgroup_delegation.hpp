// cgroup_delegation.hpp — an ordinary user's trainer on cgroup v2 asks systemd for a cgroup of its
// own to put its plugins' groups in (resource_group.hpp), by running itself again in a scope
// with Delegate=yes: `systemd-run --user --scope -p Delegate=yes -- bulkhead train ...`.
#pragma once

namespace bulkhead {

// Re-executes this program in a delegated systemd scope when all of these hold: not root, no
// cgroup this trainer may write, a cgroup2 file system, a systemd user manager that accepts a
// scope (tried first with `true`), and not done before (BULKHEAD_DELEGATED, which it sets;
// BULKHEAD_NO_DELEGATE=1 turns this off). Returns only where it does not re-execute.
void run_in_delegated_scope_if_useful(int argc, char** argv);

}  // namespace bulkhead
