// warden.hpp — the host's first process stays behind as its plugin's warden.
#pragma once

#include <functional>

#include "tree_usage.hpp"

namespace bulkhead::host {

// Runs plugin_main in a child process (same jail, same process group) and waits for it.
//  - The trainer dies (the parent-death signal, SIGHUP, or a changed parent): the warden kills
//    its whole process group, so no process the plugin started outlives the trainer — a
//    parent-death signal alone would only reach the host, never the plugin's own children.
//  - The plugin exits: the warden kills what the plugin left behind in the group, then exits
//    the way the plugin did (same status, same signal), which is what the trainer reports.
//  - SIGTERM or SIGINT is passed on to the plugin, which decides how to stop.
//  - Every 100 ms it counts the whole tree (tree_usage.hpp): past `budget`, it kills every process
//    of the plugin and exits with the bulkhead/warden_exit.hpp status naming the limit.
// Returns only in the child, with plugin_main's status; the warden itself never returns.
int run_warded(int trainer_pid, const TreeBudget& budget, const std::function<int()>& plugin_main);

}  // namespace bulkhead::host
