#include "jail.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "landlock.hpp"
#include "seccomp_filter.hpp"

namespace bulkhead::host {
namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

void limit(int resource, rlim_t value, const char* name, rlim_t hard_margin = 0) {
  rlimit rl{value, value + hard_margin};
  if (setrlimit(resource, &rl) != 0) {
    // An unprivileged process may not raise its hard limit: keep the lower of the two.
    rlimit current{};
    getrlimit(resource, &current);
    rl = {std::min(value, current.rlim_max), std::min(value + hard_margin, current.rlim_max)};
    if (setrlimit(resource, &rl) != 0) fail(std::string("setrlimit ") + name);
  }
}

void write_file(const char* path, const std::string& text) {
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail(std::string("open ") + path);
  const bool written = ::write(fd, text.data(), text.size()) == ssize_t(text.size());
  ::close(fd);
  if (!written) fail(std::string("write ") + path);
}

// The trainer is root: the plugin becomes an unprivileged user (nobody by default), so that a
// process escaping every other wall lands as a user who owns nothing. It then enters a user
// namespace of its own, in which RLIMIT_NPROC counts this plugin's processes alone.
void become_plugin_user(int uid, int gid) {
  if (setgroups(0, nullptr) != 0) fail("setgroups");
  if (setresgid(gid, gid, gid) != 0) fail("setresgid");
  if (setresuid(uid, uid, uid) != 0) fail("setresuid");
  // Changing uid made /proc/self root's: the maps below are ours to write only once dumpable again.
  if (prctl(PR_SET_DUMPABLE, 1) != 0) fail("prctl(PR_SET_DUMPABLE)");
  if (unshare(CLONE_NEWUSER) != 0) fail("unshare(CLONE_NEWUSER)");
  write_file("/proc/self/setgroups", "deny");
  write_file("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1");
  write_file("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1");
}

// A new user namespace hands its creator every capability inside it: drop them all, bounding set
// included, so that nothing the plugin runs can take one back.
void drop_capabilities() {
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[2]{};
  if (syscall(SYS_capset, &header, none) != 0) fail("capset");
}

}  // namespace

void enter_jail(const JailPolicy& policy) {
  // The trainer kills the whole group on restart, so every child of the plugin goes too.
  if (getpgrp() != getpid() && setpgid(0, 0) != 0) fail("setpgid");
  if (policy.plugin_uid >= 0 && getuid() == 0) become_plugin_user(policy.plugin_uid, policy.plugin_gid);
  drop_capabilities();
  // Until the warden takes over (warden.hpp), die with the parent outright (set after the uid
  // change above, which clears it).
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail("prctl(PR_SET_PDEATHSIG)");
  // The trainer may have died before the line above: then our parent is already someone else.
  if (policy.trainer_pid > 0 && getppid() != policy.trainer_pid) _exit(0);

  const JailLimits& limits = policy.limits;
  limit(RLIMIT_CORE, 0, "RLIMIT_CORE");
  limit(RLIMIT_AS, rlim_t(limits.address_space_mb) << 20, "RLIMIT_AS");
  // SIGXCPU at the limit, so that the trainer reports why; SIGKILL a second later, if it is caught.
  limit(RLIMIT_CPU, rlim_t(limits.cpu_time_s), "RLIMIT_CPU", 1);
  limit(RLIMIT_NOFILE, rlim_t(limits.open_files), "RLIMIT_NOFILE");
  // Counted per user (per user namespace in the full jail). A plugin left as root in the weak mode
  // would share the count with the trainer's own threads: no limit there (docs/sandbox.md).
  if (getuid() != 0) limit(RLIMIT_NPROC, rlim_t(limits.processes), "RLIMIT_NPROC");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("prctl(PR_SET_NO_NEW_PRIVS)");
  restrict_with_landlock(policy.writable, policy.network);
  load_seccomp_filter(policy.network);
}

}  // namespace bulkhead::host
