#include "seccomp_filter.hpp"

#include <sched.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>

#include <seccomp.h>

namespace bulkhead::host {
namespace {

using Filter = std::unique_ptr<void, decltype(&seccomp_release)>;

void check(int result, const std::string& what) {
  if (result != 0) throw std::runtime_error("seccomp: " + what + " failed (" + std::to_string(result) + ")");
}

// By name, so that a call this libseccomp does not know is skipped rather than a build error;
// one the kernel lacks cannot be made anyway.
void refuse(scmp_filter_ctx filter, const char* name, int error = EPERM) {
  const int call = seccomp_syscall_resolve_name(name);
  if (call == __NR_SCMP_ERROR) return;
  check(seccomp_rule_add(filter, SCMP_ACT_ERRNO(error), call, 0), std::string("refusing ") + name);
}

// socket() and socketpair() take an int family: every value but the allowed ones is refused,
// comparing the low 32 bits only, exactly as the kernel reads the argument.
void allow_only_families(scmp_filter_ctx filter, const std::set<int>& allowed) {
  for (const char* name : {"socket", "socketpair"}) {
    const int call = seccomp_syscall_resolve_name(name);
    for (int family = 0; family < AF_MAX; ++family)
      if (!allowed.count(family))
        check(seccomp_rule_add(filter, SCMP_ACT_ERRNO(EACCES), call, 1, SCMP_A0_32(SCMP_CMP_EQ, scmp_datum_t(family))),
              std::string("filtering ") + name);
    check(seccomp_rule_add(filter, SCMP_ACT_ERRNO(EACCES), call, 1, SCMP_A0_32(SCMP_CMP_GE, scmp_datum_t(AF_MAX))),
          std::string("filtering ") + name);
  }
}

void refuse_new_namespaces(scmp_filter_ctx filter) {
  for (scmp_datum_t flag : std::initializer_list<scmp_datum_t>{CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS,
                             CLONE_NEWCGROUP, 0x00000080UL /* CLONE_NEWTIME */})
    check(seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1, SCMP_A0_64(SCMP_CMP_MASKED_EQ, flag, flag)),
          "filtering clone");
  refuse(filter, "clone3", ENOSYS);
  for (const char* name : {"unshare", "setns"}) refuse(filter, name);
}

constexpr const char* kRefused[] = {
    // io_uring does file and socket work without the system calls this filter sees
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    // mounts, old and new API
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    "mount_setattr",
    // other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    // the kernel itself
    "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "userfaultfd", "open_by_handle_at",
    "name_to_handle_at", "quotactl", "syslog", "ioperm", "iopl", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "sethostname", "setdomainname", "lookup_dcookie", "uselib", "vhangup",
    // identity
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid", "capset",
    // the process group is how every descendant is reached
    "setsid", "setpgid",
};

}  // namespace

void load_seccomp_filter(bool network) {
  Filter filter(seccomp_init(SCMP_ACT_ALLOW), &seccomp_release);
  if (!filter) throw std::runtime_error("seccomp_init failed");
  check(seccomp_attr_set(filter.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS), "killing other architectures");
  std::set<int> families{AF_UNIX};
  if (network) families.insert({AF_INET, AF_INET6, AF_NETLINK});
  allow_only_families(filter.get(), families);
  refuse_new_namespaces(filter.get());
  for (const char* name : kRefused) refuse(filter.get(), name);
  check(seccomp_load(filter.get()), "loading the filter");
}

}  // namespace bulkhead::host
