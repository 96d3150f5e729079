#include "supervisor/jail_layers.hpp"

#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "supervisor/host_process.hpp"
#include "supervisor/resource_group.hpp"

namespace bulkhead {
namespace {

// Whether this user may make a user namespace: tried in a child, which exits at once.
bool user_namespaces_allowed() {
  const pid_t child = fork();
  if (child == 0) _exit(unshare(CLONE_NEWUSER) == 0 ? 0 : 1);
  int status = 0;
  return child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

JailLayer user_namespace() {
  if (user_namespaces_allowed()) return {"user namespace", true, "allowed"};
  return {"user namespace", false, "refused for this user (kernel.unprivileged_userns_clone, user.max_user_namespaces, or a container's seccomp)"};
}

JailLayer uid_mapping(const JailSettings& jail) {
  if (getuid() == 0) {
    try {
      const PluginIdentity identity = plugin_identity(jail);
      return {"uid mapping", true, "plugins run as '" + jail.user + "' (uid " + std::to_string(identity.uid) + "), not root, in a user namespace of their own"};
    } catch (const std::exception& e) {
      return {"uid mapping", false, e.what()};
    }
  }
  return {"uid mapping", true, "plugins run as this user (uid " + std::to_string(getuid()) + ") mapped into a user namespace of their own"};
}

JailLayer seccomp() {
  // PR_GET_SECCOMP answers 0 (no filter yet) where the kernel has seccomp, EINVAL where not.
  if (prctl(PR_GET_SECCOMP) >= 0) return {"seccomp", true, "system-call filter loaded by each host"};
  return {"seccomp", false, "not in this kernel"};
}

JailLayer landlock() {
  const long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */);
  if (abi >= 1) return {"Landlock", true, "ABI " + std::to_string(abi)};
  return {"Landlock", false, "not in this kernel, or turned off"};
}

JailLayer cgroups() {
  return {"cgroups", ResourceGroup::unavailable().empty(), ResourceGroup::mounted() + "; plugins in " + ResourceGroup::layer()};
}

JailLayer accounting_floor() {
  const bool proc = std::ifstream("/proc/self/stat").good();
  if (!proc) return {"accounting floor", false, "no /proc"};
  return {"accounting floor", true,
          "each plugin's warden counts its whole tree's memory, processes and CPU time from /proc every 100 ms and kills it past a limit"};
}

JailLayer process_count(const JailSettings& jail) {
  if (jail.mode == JailSettings::Mode::weak && getuid() == 0)
    return {"RLIMIT_NPROC", false, "not set: a weakly jailed plugin runs as root, whose count the trainer shares"};
  return {"RLIMIT_NPROC", true, "per plugin uid, counted in the plugin's own user namespace"};
}

JailLayer full_jail(const JailSettings& jail) {
  if (jail.mode == JailSettings::Mode::weak) return {"full jail", false, "\"jail\": {\"mode\": \"weak\"}: namespaces and the file-system view are off"};
  const std::string why = HostProcess::full_jail_unavailable(jail);
  if (why.empty()) return {"full jail", true, "bubblewrap namespaces and file-system view built around /bin/true with the real host"};
  return {"full jail", false, why};
}

}  // namespace

std::vector<JailLayer> jail_layers(const JailSettings& jail) {
  return {full_jail(jail), user_namespace(), uid_mapping(jail), seccomp(), landlock(), cgroups(), accounting_floor(), process_count(jail)};
}

std::string describe_layers(const std::vector<JailLayer>& layers) {
  std::string text;
  for (const auto& layer : layers) text += (text.empty() ? "" : "; ") + layer.name + ": " + (layer.active ? "" : "OFF, ") + layer.state;
  return text;
}

}  // namespace bulkhead
