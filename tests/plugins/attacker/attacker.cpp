// attacker (test plugin): a hostile plugin that tries, for real, to escape its jail in
// on_training_start, and prints one line per attempt: "attack <name>: blocked: <why>" or
// "attack <name>: SUCCEEDED: <what>". The tests judge from the outside (a listener, file hashes,
// the trainer's state, the report); the lines say where to look when one fails. Options:
//   attacks:      names to run (below)
//   read_paths:   files to read and print          write_paths: files to append "PWNED" to
//   touch_paths:  files to open for writing and touch (no bytes written: the build's own files)
//   ports:        TCP and UDP ports on 127.0.0.1 and ::1 to reach
//   secret_env:   an environment variable name of the trainer's to print
//   orphan_name:  the name (comm) of the process that tries to outlive the trainer
// Attacks: files, proc (the trainer through /proc and signals), network, sockets (other plugins'
// ZeroMQ sockets), privileges (mount, namespaces, uid, ptrace...), fork_bomb, memory_children,
// cpu_children, fill_tmp, fill_scratch, outlive, env.
#include <fcntl.h>
#include <glob.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <zmq.hpp>

#include <bulkhead/plugin.hpp>

extern char** environ;

namespace {

void report(const std::string& name, bool succeeded, const std::string& detail) {
  std::cout << "attack " << name << ": " << (succeeded ? "SUCCEEDED: " : "blocked: ") << detail << std::endl;
}

// A system call's outcome: ok (>= 0) is an escape.
void attempt(const std::string& name, long result) {
  report(name, result >= 0, result >= 0 ? "returned " + std::to_string(result) : std::strerror(errno));
}

std::vector<std::string> strings(const bulkhead::Json& options, const char* key) {
  return options.value(key, std::vector<std::string>{});
}

std::vector<std::string> glob_all(const std::string& pattern) {
  std::vector<std::string> found;
  glob_t g{};
  if (glob(pattern.c_str(), 0, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) found.push_back(g.gl_pathv[i]);
  globfree(&g);
  return found;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void files(const bulkhead::Json& options) {
  for (const auto& path : strings(options, "read_paths")) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      report("read " + path, false, std::strerror(errno));
      continue;
    }
    report("read " + path, true, slurp(path));
  }
  for (const auto& path : strings(options, "write_paths")) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND);
    const bool wrote = fd >= 0 && ::write(fd, "PWNED\n", 6) == 6;
    report("write " + path, wrote, wrote ? "appended" : std::strerror(errno));
    if (fd >= 0) ::close(fd);
  }
  for (const auto& path : strings(options, "touch_paths")) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND);
    const bool touched = fd >= 0 && ::futimens(fd, nullptr) == 0;
    report("touch " + path, touched, touched ? "opened for writing and touched" : std::strerror(errno));
    if (fd >= 0) ::close(fd);
  }
}

// Every process whose command line says "bulkhead" and "train": the trainer, if it can be seen.
std::vector<int> trainer_pids() {
  std::vector<int> pids;
  for (const auto& dir : glob_all("/proc/[0-9]*")) {
    std::string cmdline = slurp(dir + "/cmdline");
    for (auto& c : cmdline)
      if (c == '\0') c = ' ';
    if (cmdline.find("bin/bulkhead ") != std::string::npos && cmdline.find(" train") != std::string::npos)
      pids.push_back(std::stoi(dir.substr(6)));
  }
  return pids;
}

void proc() {
  const auto pids = trainer_pids();
  report("find the trainer in /proc", !pids.empty(), pids.empty() ? "no bulkhead train process visible" : "pid " + std::to_string(pids[0]));
  for (int pid : pids) {
    const std::string base = "/proc/" + std::to_string(pid);
    const std::string environment = slurp(base + "/environ");
    report("read " + base + "/environ", !environment.empty(), environment);
    attempt("open " + base + "/mem for writing", ::open((base + "/mem").c_str(), O_RDWR));
    attempt("SIGKILL the trainer", ::kill(pid, SIGKILL));
  }
}

void connect_to(const std::string& name, int family, int type, int port) {
  const int fd = ::socket(family, type, 0);
  if (fd < 0) return attempt(name, fd);
  long result;
  if (family == AF_INET) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    result = type == SOCK_STREAM ? ::connect(fd, (sockaddr*)&to, sizeof to) : ::sendto(fd, "PWNED", 5, 0, (sockaddr*)&to, sizeof to);
  } else {
    sockaddr_in6 to{};
    to.sin6_family = AF_INET6;
    to.sin6_port = htons(port);
    to.sin6_addr = in6addr_loopback;
    result = type == SOCK_STREAM ? ::connect(fd, (sockaddr*)&to, sizeof to) : ::sendto(fd, "PWNED", 5, 0, (sockaddr*)&to, sizeof to);
  }
  if (result >= 0 && type == SOCK_STREAM) result = ::send(fd, "PWNED", 5, 0);
  attempt(name, result);
  ::close(fd);
}

void network(const bulkhead::Json& options) {
  for (int port : options.value("ports", std::vector<int>{})) {
    const std::string p = std::to_string(port);
    connect_to("tcp 127.0.0.1:" + p, AF_INET, SOCK_STREAM, port);
    connect_to("udp 127.0.0.1:" + p, AF_INET, SOCK_DGRAM, port);
    connect_to("tcp [::1]:" + p, AF_INET6, SOCK_STREAM, port);
    connect_to("udp [::1]:" + p, AF_INET6, SOCK_DGRAM, port);
  }
  // The family argument is an int: high bits in the 64-bit register must not get it past a filter.
  attempt("socket(AF_INET | 1 << 32)", syscall(SYS_socket, (1UL << 32) | AF_INET, SOCK_STREAM, 0));
  attempt("socket(AF_NETLINK)", ::socket(AF_NETLINK, SOCK_RAW, 0));
  attempt("socket(AF_PACKET)", ::socket(AF_PACKET, SOCK_RAW, 0));
  // io_uring opens sockets (IORING_OP_SOCKET) and files without the system calls a filter sees.
  io_uring_params params{};
  attempt("io_uring_setup", syscall(SYS_io_uring_setup, 8, &params));
}

// Other plugins' ZeroMQ sockets: connect and ask the trainer, in their name, to change grad_accum.
void sockets() {
  std::vector<std::string> found;
  for (const char* pattern : {"/tmp/bulkhead-*/*/*.sock", "/tmp/bulkhead-*/*.sock", "/run/bulkhead/*.sock", "/tmp/*/*/*.sock"})
    for (const auto& path : glob_all(pattern))
      if (path != "/run/bulkhead/plugin.sock") found.push_back(path);
  report("find other plugins' sockets", !found.empty(), found.empty() ? "none visible" : found.front());
  zmq::context_t context;
  for (const auto& path : found) {
    zmq::socket_t socket(context, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 200);
    socket.connect("ipc://" + path);
    const char control[] = "\x93\x02\xa7" "control" "\x81\xa8" "requests" "\x91\x83\xa6" "action" "\xa7" "set_arg"
                           "\xa4" "name" "\xaa" "grad_accum" "\xa5" "value" "\x07";
    socket.send(zmq::buffer(control, sizeof control - 1), zmq::send_flags::dontwait);
    report("send set_arg grad_accum 7 to " + path, true, "sent (the trainer must ignore it)");
  }
}

void privileges() {
  attempt("setuid(0)", ::setuid(0));
  attempt("unshare(CLONE_NEWUSER)", ::unshare(CLONE_NEWUSER));
  attempt("clone(CLONE_NEWUSER)", [] {
    const long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid_t(pid), nullptr, 0);
    return pid;
  }());
  attempt("mount tmpfs", ::mount("none", "/tmp", "tmpfs", 0, nullptr));
  attempt("fsopen(tmpfs)", syscall(SYS_fsopen, "tmpfs", 0));
  attempt("ptrace(PTRACE_ATTACH, 1)", ::ptrace(PTRACE_ATTACH, 1, nullptr, nullptr));
  char byte;
  iovec local{&byte, 1}, remote{(void*)0x400000, 1};
  attempt("process_vm_readv(1)", syscall(SYS_process_vm_readv, 1, &local, 1, &remote, 1, 0));
  attempt("bpf", syscall(SYS_bpf, 0, nullptr, 0));
  attempt("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
  attempt("perf_event_open", syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0));
  attempt("setsid", ::setsid());
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("Uid:", 0) == 0 || line.rfind("CapEff:", 0) == 0 || line.rfind("NoNewPrivs:", 0) == 0 || line.rfind("Seccomp:", 0) == 0)
      std::cout << "attacker " << line << std::endl;
}

// Children that each stay under the per-process limits, together far over the plugin's.
void children(const std::string& name, int count, void (*work)()) {
  int started = 0;
  for (int i = 0; i < count; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      work();
      _exit(0);
    }
    if (pid > 0) ++started;
  }
  report(name, started == count, std::to_string(started) + " of " + std::to_string(count) + " children started");
  sleep(30);  // the supervisor ends this; if it does not, the hook's deadline does
}

void use_300_mb() {
  const size_t size = size_t(300) << 20;
  char* memory = static_cast<char*>(malloc(size));
  for (size_t i = 0; memory != nullptr && i < size; i += 4096) memory[i] = 1;
  sleep(30);
}

void spin() {
  for (volatile unsigned long i = 0;; ++i) {}
}

void fork_bomb() {
  int children = 0;
  for (; children < 100000; ++children) {
    const pid_t pid = fork();
    if (pid < 0) break;
    if (pid == 0) {
      sleep(60);
      _exit(0);
    }
  }
  report("fork bomb", children >= 100000, std::to_string(children) + " processes before fork failed: " + std::strerror(errno));
  sleep(30);
}

// At most 200 MB/s, so that the check (every second) stops it well before the disk fills.
void fill_scratch() {
  const std::string path = std::string(std::getenv("BULKHEAD_SCRATCH_DIR")) + "/fill";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char> block(1 << 20, 'x');
  long long written = 0;
  for (int i = 0; i < 1024 && fd >= 0 && ::write(fd, block.data(), block.size()) > 0; ++i) {
    written += block.size();
    usleep(5000);
  }
  report("fill the scratch folder with 1 GB", written >= (1LL << 30), std::to_string(written >> 20) + " MB written");
  sleep(30);
}

void fill_tmp() {
  const int fd = ::open("/tmp/attacker-fill", O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char> block(1 << 20, 'x');
  long long written = 0;
  for (int i = 0; i < 2048 && fd >= 0; ++i) {
    const ssize_t n = ::write(fd, block.data(), block.size());
    if (n <= 0) break;
    written += n;
  }
  report("fill /tmp with 2 GB", written >= (2LL << 30), std::to_string(written >> 20) + " MB written: " + std::strerror(errno));
  if (fd >= 0) ::close(fd);
  ::unlink("/tmp/attacker-fill");
}

// A grandchild that tries to outlive everything: leaves the group, kills the warden, sleeps.
void outlive(const std::string& orphan_name) {
  const pid_t child = fork();
  if (child == 0) {
    attempt("setsid in a child", ::setsid());
    if (fork() == 0) {
      prctl(PR_SET_NAME, orphan_name.c_str());
      sleep(600);
      _exit(0);
    }
    _exit(0);
  }
  waitpid(child, nullptr, 0);
  attempt("SIGKILL the warden", ::kill(getppid(), SIGKILL));
  sleep(2);
}

void env(const bulkhead::Json& options) {
  const std::string name = options.value("secret_env", "");
  const char* value = name.empty() ? nullptr : std::getenv(name.c_str());
  report("read $" + name, value != nullptr, value != nullptr ? value : "not set");
  for (char** entry = environ; *entry != nullptr; ++entry) std::cout << "attacker env " << *entry << std::endl;
}

class Attacker : public bulkhead::Plugin {
 public:
  void on_training_start(const bulkhead::Kwargs&) override {
    const auto& options = context().options();
    for (const auto& attack : strings(options, "attacks")) {
      if (attack == "files") files(options);
      else if (attack == "proc") proc();
      else if (attack == "network") network(options);
      else if (attack == "sockets") sockets();
      else if (attack == "privileges") privileges();
      else if (attack == "fork_bomb") fork_bomb();
      else if (attack == "memory_children") children("4 children of 300 MB", 4, use_300_mb);
      else if (attack == "cpu_children") children("6 spinning children", 6, spin);
      else if (attack == "fill_tmp") fill_tmp();
      else if (attack == "fill_scratch") fill_scratch();
      else if (attack == "outlive") outlive(options.value("orphan_name", "attacker-orphan"));
      else if (attack == "env") env(options);
      else throw bulkhead::HookError("unknown attack " + attack);
    }
    std::cout << "attacker done" << std::endl;
  }
};

}  // namespace

BULKHEAD_PLUGIN(Attacker, "attacker", "1.0.0", "Tries to escape its jail (test plugin)")
