// bulkhead-plugin-host — the process every plugin runs in.
//
//   bulkhead-plugin-host --runtime cpp|python|node|exec --entry ENTRY [--plugin-dir DIR] [--limit-... N]
//                        [--plugin-uid UID --plugin-gid GID] [--network 0|1] [--writable DIR:DIR...]
//                        [--tree-memory-mb N] [--tree-cpu-s N] [--tree-processes N]
//
// Started by the trainer, inside the bubblewrap sandbox it builds (docs/sandbox.md), with
// BULKHEAD_ENDPOINT and BULKHEAD_TOKEN in its environment (and BULKHEAD_PARENT_PID when unjailed).
// It first sets up the jail from the inside (jail.hpp), then forks: the first process stays as the
// plugin's warden (warden.hpp), the second either serves a C++ plugin library (cpp_loader.hpp) or
// execs another runtime's host inside the same jail (runtime_exec.hpp).
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include <bulkhead/heap.hpp>

#include "cpp_loader.hpp"
#include "jail.hpp"
#include "runtime_exec.hpp"
#include "warden.hpp"

namespace {

constexpr int kUsageError = 64;

int usage(const std::string& problem) {
  std::cerr << "bulkhead-plugin-host: " << problem << "\n"
            << "usage: bulkhead-plugin-host --runtime cpp|python|node|exec --entry ENTRY [--plugin-dir DIR]\n"
            << "         [--limit-address-space-mb N] [--limit-cpu-s N] [--limit-open-files N] [--limit-processes N]\n"
            << "         [--plugin-uid UID --plugin-gid GID] [--network 0|1] [--writable DIR:DIR...]\n"
            << "         [--tree-memory-mb N] [--tree-cpu-s N] [--tree-processes N]\n";
  return kUsageError;
}

}  // namespace

int main(int argc, char** argv) {
  bulkhead::keep_large_buffers_in_heap();
  std::map<std::string, std::string> args;
  for (int i = 1; i < argc; i += 2) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0 || i + 1 >= argc) return usage("bad argument '" + key + "'");
    args[key.substr(2)] = argv[i + 1];
  }
  for (const char* required : {"runtime", "entry"})
    if (!args.count(required)) return usage(std::string("--") + required + " is required");

  bulkhead::host::JailPolicy policy;
  bulkhead::host::TreeBudget budget;  // what the warden holds the whole tree to
  try {
    auto number = [&](const char* key, auto& field) {
      if (args.count(key)) field = std::stol(args[key]);
    };
    number("limit-address-space-mb", policy.limits.address_space_mb);
    number("limit-cpu-s", policy.limits.cpu_time_s);
    number("limit-open-files", policy.limits.open_files);
    number("limit-processes", policy.limits.processes);
    number("plugin-uid", policy.plugin_uid);
    number("plugin-gid", policy.plugin_gid);
    number("network", policy.network);
    number("tree-memory-mb", budget.memory_mb);
    number("tree-cpu-s", budget.cpu_time_s);
    number("tree-processes", budget.processes);
    // Colon-separated, like PATH.
    for (std::size_t start = 0, end; start < args["writable"].size(); start = end + 1) {
      end = args["writable"].find(':', start);
      if (end == std::string::npos) end = args["writable"].size();
      if (end > start) policy.writable.push_back(args["writable"].substr(start, end - start));
    }
  } catch (const std::exception&) {
    return usage("a numeric argument is not a number");
  }

  const char* parent = std::getenv("BULKHEAD_PARENT_PID");
  policy.trainer_pid = parent != nullptr ? std::atoi(parent) : 0;
  const int trainer_pid = policy.trainer_pid;
  try {
    bulkhead::host::enter_jail(policy);
  } catch (const std::exception& e) {
    std::cerr << "bulkhead-plugin-host: cannot set up the jail: " << e.what() << std::endl;
    return 71;
  }

  return bulkhead::host::run_warded(trainer_pid, budget, [&] {
    const std::string& runtime = args["runtime"];
    if (runtime != "cpp") return bulkhead::host::exec_runtime(runtime, args["entry"], args["plugin-dir"]);
    try {
      return bulkhead::host::serve_cpp_plugin(args["entry"]);
    } catch (const std::exception& e) {
      std::cerr << "bulkhead-plugin-host: " << args["entry"] << ": " << e.what() << std::endl;
      return 78;
    }
  });
}
