#include "jail.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include <seccomp.h>

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

// Network sockets are refused with EACCES; local (AF_UNIX) sockets, which ZeroMQ's ipc uses, stay.
void refuse_network() {
  scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
  if (filter == nullptr) throw std::runtime_error("seccomp_init failed");
  for (int domain : {AF_INET, AF_INET6, AF_PACKET, AF_NETLINK}) {
    if (seccomp_rule_add(filter, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(domain))) != 0) {
      seccomp_release(filter);
      throw std::runtime_error("seccomp_rule_add failed");
    }
  }
  for (int call : {SCMP_SYS(ptrace), SCMP_SYS(mount), SCMP_SYS(umount2), SCMP_SYS(reboot), SCMP_SYS(kexec_load),
                   SCMP_SYS(init_module), SCMP_SYS(finit_module), SCMP_SYS(setns), SCMP_SYS(unshare),
                   // The group is how the warden and the trainer reach every descendant: no leaving it.
                   SCMP_SYS(setsid), SCMP_SYS(setpgid)})
    seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM), call, 0);
  const int loaded = seccomp_load(filter);
  seccomp_release(filter);
  if (loaded != 0) throw std::runtime_error("seccomp_load failed");
}

}  // namespace

void enter_jail(const JailLimits& limits, int trainer_pid) {
  // The trainer kills the whole group on restart, so every child of the plugin goes too.
  if (getpgrp() != getpid() && setpgid(0, 0) != 0) fail("setpgid");
  // Until the warden takes over (warden.hpp), die with the trainer outright.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail("prctl(PR_SET_PDEATHSIG)");
  // The trainer may have died before the line above: then our parent is already someone else.
  if (trainer_pid > 0 && getppid() != trainer_pid) _exit(0);

  limit(RLIMIT_CORE, 0, "RLIMIT_CORE");
  limit(RLIMIT_AS, rlim_t(limits.address_space_mb) << 20, "RLIMIT_AS");
  // SIGXCPU at the limit, so that the trainer reports why; SIGKILL a second later, if it is caught.
  limit(RLIMIT_CPU, rlim_t(limits.cpu_time_s), "RLIMIT_CPU", 1);
  limit(RLIMIT_NOFILE, rlim_t(limits.open_files), "RLIMIT_NOFILE");
  limit(RLIMIT_NPROC, rlim_t(limits.processes), "RLIMIT_NPROC");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("prctl(PR_SET_NO_NEW_PRIVS)");
  refuse_network();
}

}  // namespace bulkhead::host
