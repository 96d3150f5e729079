#include "warden.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>

namespace bulkhead::host {
namespace {

// Every process in this process group but the warden gets SIGKILL. The jail's seccomp filter
// refuses setsid and setpgid, so no descendant of the plugin can have left the group.
void kill_rest_of_group() {
  const pid_t self = getpid();
  const pid_t group = getpgrp();
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return;
  while (dirent* entry = readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == self) continue;
    std::ifstream stat(std::string("/proc/") + entry->d_name + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so read after the last ')'.
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    long ppid = 0, pgrp = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %ld %ld", &state, &ppid, &pgrp) == 3 && pgrp == group)
      ::kill(static_cast<pid_t>(pid), SIGKILL);
  }
  closedir(proc);
}

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

[[noreturn]] void watch(pid_t plugin, int trainer_pid, const sigset_t& signals) {
  const timespec tick{1, 0};
  for (;;) {
    siginfo_t info{};
    const int sig = sigtimedwait(&signals, &info, &tick);
    // A parent-death signal can be missed only if the trainer died before prctl; the parent check catches that.
    if (sig == SIGHUP || (trainer_pid > 0 && getppid() != trainer_pid)) ::kill(0, SIGKILL);
    if (sig == SIGTERM || sig == SIGINT) ::kill(plugin, sig);
    int status = 0;
    if (waitpid(plugin, &status, WNOHANG) == plugin) {
      kill_rest_of_group();
      exit_like(status);
    }
  }
}

}  // namespace

int run_warded(int trainer_pid, const std::function<int()>& plugin_main) {
  sigset_t signals, previous;
  sigemptyset(&signals);
  for (int sig : {SIGCHLD, SIGHUP, SIGTERM, SIGINT}) sigaddset(&signals, sig);
  sigprocmask(SIG_BLOCK, &signals, &previous);
  if (prctl(PR_SET_PDEATHSIG, SIGHUP) != 0) return 71;
  if (trainer_pid > 0 && getppid() != trainer_pid) _exit(0);  // the trainer is already gone

  const pid_t warden = getpid();
  const pid_t plugin = fork();
  if (plugin < 0) return 71;
  if (plugin > 0) watch(plugin, trainer_pid, signals);

  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != warden) _exit(0);
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  return plugin_main();
}

}  // namespace bulkhead::host
