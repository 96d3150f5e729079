// seccomp_filter.hpp — the system calls a plugin may not make, whatever it runs.
#pragma once

namespace bulkhead::host {

// Loads a filter that refuses (with EPERM, or EACCES for sockets):
//  - sockets of any family but AF_UNIX (plus AF_INET, AF_INET6, AF_NETLINK when `network`),
//    compared on the 32 bits the kernel reads, so high bits set in the 64-bit register do not pass;
//  - io_uring (it opens sockets and files without the system calls below), the old and new mount
//    APIs, chroot and pivot_root, namespaces (unshare, setns, clone with a CLONE_NEW* flag;
//    clone3, whose flags sit in memory a filter cannot read, answers ENOSYS so libc falls back to clone);
//  - reaching other processes: ptrace, process_vm_readv/writev, pidfd_getfd, kcmp;
//  - bpf, perf_event_open, keyrings, kernel modules, kexec, reboot, swap, accounting, clock and
//    host name changes, userfaultfd, file handles, quotactl, syslog, ioperm/iopl;
//  - changing identity (set*uid, set*gid, setgroups, capset) and leaving the process group
//    (setsid, setpgid), which is how the warden and the trainer reach every descendant.
// System calls of another architecture (i386, x32) are killed. Throws std::runtime_error.
void load_seccomp_filter(bool network);

}  // namespace bulkhead::host
