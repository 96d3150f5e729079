#include "warden.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>
#include <iostream>
#include <optional>
#include <utility>
#include <string>

#include <bulkhead/warden_exit.hpp>

#include "tree_usage.hpp"

namespace bulkhead::host {
namespace {

// How often the warden counts its tree: short enough that a tree past a limit is stopped within
// a fraction of a second, long enough that counting costs the plugin next to nothing.
constexpr long kCountEveryMs = 100;

[[noreturn]] void exit_like(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    signal(sig, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, sig);
    sigprocmask(SIG_UNBLOCK, &only, nullptr);
    raise(sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

// Reaps every child that ended: the plugin, and the orphans of its tree (the warden is their
// subreaper, so what they used is counted as reaped). The plugin's status once it ended.
std::optional<int> reap_children(pid_t plugin) {
  std::optional<int> plugin_status;
  int status = 0;
  for (pid_t done; (done = waitpid(-1, &status, WNOHANG)) > 0;)
    if (done == plugin) plugin_status = status;
  return plugin_status;
}

long long reaped_cpu_ms() {
  rusage children{};
  getrusage(RUSAGE_CHILDREN, &children);
  auto ms = [](const timeval& t) { return static_cast<long long>(t.tv_sec) * 1000 + t.tv_usec / 1000; };
  return ms(children.ru_utime) + ms(children.ru_stime);
}

// A tree past its budget is killed, and the warden exits with the warden_exit status that names
// the limit. CPU time must be past it at two counts in a row: a child reaped between reading its
// parent and reading it is counted twice in one count.
void enforce(const TreeBudget& budget, bool& cpu_was_over) {
  std::string why;
  const int over = over_budget(measure_group(getpgrp(), getpid()), reaped_cpu_ms(), budget, why);
  if (over == 0) {
    cpu_was_over = false;
    return;
  }
  if (over == bulkhead::warden_exit::kCpuTime && !std::exchange(cpu_was_over, true)) return;
  kill_group_except(getpgrp(), getpid());
  std::cerr << "bulkhead-plugin-host: warden: " << why << ": every process of the plugin killed" << std::endl;
  _exit(over);
}

long long now_ms() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<long long>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

[[noreturn]] void watch(pid_t plugin, int trainer_pid, const sigset_t& signals, const TreeBudget& budget) {
  const timespec tick{0, kCountEveryMs * 1000000};
  bool cpu_was_over = false;
  long long next_count_ms = 0;
  for (;;) {
    siginfo_t info{};
    const int sig = sigtimedwait(&signals, &info, &tick);
    // A parent-death signal can be missed only if the trainer died before prctl; the parent check catches that.
    if (sig == SIGHUP || (trainer_pid > 0 && getppid() != trainer_pid)) ::kill(0, SIGKILL);
    if (sig == SIGTERM || sig == SIGINT) ::kill(plugin, sig);
    if (const auto status = reap_children(plugin)) {
      kill_group_except(getpgrp(), getpid());
      exit_like(*status);
    }
    // Not at every SIGCHLD: a plugin that starts many short processes would make the warden count without rest.
    if (now_ms() >= next_count_ms) {
      next_count_ms = now_ms() + kCountEveryMs;
      enforce(budget, cpu_was_over);
    }
  }
}

}  // namespace

int run_warded(int trainer_pid, const TreeBudget& budget, const std::function<int()>& plugin_main) {
  sigset_t signals, previous;
  sigemptyset(&signals);
  for (int sig : {SIGCHLD, SIGHUP, SIGTERM, SIGINT}) sigaddset(&signals, sig);
  sigprocmask(SIG_BLOCK, &signals, &previous);
  if (prctl(PR_SET_PDEATHSIG, SIGHUP) != 0) return 71;
  // Orphans of the plugin's tree become the warden's children, not the pid namespace's init's:
  // the warden reaps them, and so counts the CPU time they used.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return 71;
  if (trainer_pid > 0 && getppid() != trainer_pid) _exit(0);  // the trainer is already gone

  const pid_t warden = getpid();
  const pid_t plugin = fork();
  if (plugin < 0) return 71;
  if (plugin > 0) watch(plugin, trainer_pid, signals, budget);

  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != warden) _exit(0);
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  return plugin_main();
}

}  // namespace bulkhead::host
