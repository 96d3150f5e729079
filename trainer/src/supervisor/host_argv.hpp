// host_argv.hpp — what a plugin host is started as: its command line (runtime, entry, limits,
// identity, writable places) and, in the full jail, the view of the system bubblewrap gives it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "supervisor/host_process.hpp"
#include "supervisor/sandbox.hpp"

namespace bulkhead {

// bulkhead-plugin-host's arguments for this launch; `jailed`: in the full jail.
std::vector<std::string> host_arguments(const HostLaunch& launch, bool jailed);
// What the plugin sees in the full jail besides the system.
JailView jail_view(const HostLaunch& launch);
// Paths joined with ':', as BULKHEAD_SEARCH_PATH and --writable take them.
std::string join_paths(const std::vector<std::filesystem::path>& paths);

}  // namespace bulkhead
