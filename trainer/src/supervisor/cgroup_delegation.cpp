#include "supervisor/cgroup_delegation.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "supervisor/resource_group.hpp"

namespace bulkhead {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> scope_command() { return {"systemd-run", "--user", "--scope", "--quiet", "-p", "Delegate=yes", "--"}; }

bool user_manager_running() {
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  return runtime != nullptr && fs::exists(fs::path(runtime) / "systemd" / "private");
}

// Runs `argv` and says whether it exited 0 (its output goes nowhere).
bool succeeds(const std::vector<std::string>& argv) {
  const pid_t child = fork();
  if (child == 0) {
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    freopen("/dev/null", "w", stdout);
    freopen("/dev/null", "w", stderr);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  return child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

void run_in_delegated_scope_if_useful(int argc, char** argv) {
  if (getuid() == 0 || std::getenv("BULKHEAD_DELEGATED") != nullptr || std::getenv("BULKHEAD_NO_DELEGATE") != nullptr) return;
  if (!user_manager_running() || !fs::exists("/sys/fs/cgroup/cgroup.controllers")) return;  // cgroup v2 only, with systemd
  if (ResourceGroup::unavailable().empty()) return;  // a writable cgroup already
  std::vector<std::string> probe = scope_command();
  probe.push_back("true");
  if (!succeeds(probe)) return;
  logger("plugins")->info("running again in a systemd scope with Delegate=yes, for cgroups of the plugins' own");
  setenv("BULKHEAD_DELEGATED", "1", 1);
  std::vector<std::string> command = scope_command();
  command.push_back(fs::read_symlink("/proc/self/exe").string());
  for (int i = 1; i < argc; ++i) command.push_back(argv[i]);
  std::vector<char*> args;
  for (const auto& arg : command) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());  // returns only where it failed: go on without the scope
}

}  // namespace bulkhead
