// warden_exit.hpp — how a plugin host says that its warden killed the plugin's tree for going past
// a whole-tree limit: the host exits with one of these statuses, and the trainer, which knows the
// limits it gave, names the limit. Shared by bulkhead-plugin-host and the trainer; not for plugins.
#pragma once

namespace bulkhead::warden_exit {

// Statuses a plugin is unlikely to choose (a plugin that exits with one blames only itself).
constexpr int kMemory = 90;     // the tree's resident memory together past --tree-memory-mb
constexpr int kProcesses = 91;  // the tree's processes and threads together past --tree-processes
constexpr int kCpuTime = 92;    // the tree's CPU time, live and reaped, past --tree-cpu-s

}  // namespace bulkhead::warden_exit
