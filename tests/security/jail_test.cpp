// The jail, tested from the outside: a hostile plugin (tests/plugins/attacker) inside real
// `bulkhead train` runs, as root and as an ordinary user. Each attack is judged by what the
// trainer's side sees: a listener that receives nothing, files whose bytes and times are
// unchanged, a secret that never reaches any output, the trainer alive to the last step, the
// plugin's processes in namespaces of their own, limits hit and named in the report, nothing
// left alive after the trainer exits or is SIGKILLed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <sched.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/paths.hpp"
#include "supervisor/resource_group.hpp"
#include "support/proc.hpp"

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace std::chrono_literals;
using bulkhead::proc_pids;
using bulkhead::read_proc_file;
using bulkhead::read_proc_stat;

constexpr const char* kTestUser = "bulkhead-jail-test";

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string random_secret() {
  std::random_device device;
  return "secret-" + std::to_string(device()) + std::to_string(device());
}

// Who runs the trainer: root (how containers and CI run), an ordinary user, or an ordinary user
// to whom a cgroup v2 subtree is delegated (as systemd's Delegate=yes does: the folder and its
// cgroup.procs, cgroup.subtree_control and cgroup.threads are the user's, the trainer starts in it).
enum class As { root, user, user_cgroup2 };

std::string name(As as) { return as == As::root ? "root" : as == As::user ? "user" : "user_cgroup2"; }

// The ordinary user, created once (the tests run as root); nullopt when that cannot be done here.
std::optional<passwd> ordinary_user() {
  static std::optional<passwd> user = []() -> std::optional<passwd> {
    if (getuid() != 0) return std::nullopt;
    if (getpwnam(kTestUser) == nullptr)
      std::system((std::string("useradd --system --no-create-home --shell /usr/sbin/nologin ") + kTestUser + " >/dev/null 2>&1").c_str());
    const passwd* entry = getpwnam(kTestUser);
    if (entry == nullptr) return std::nullopt;
    return *entry;
  }();
  return user;
}

// Steps recorded in a run's metrics.
long loss_records(const fs::path& run_dir) {
  std::ifstream in(run_dir / "metrics.jsonl");
  long count = 0;
  for (std::string line; std::getline(in, line);) count += line.find("\"loss\"") != std::string::npos;
  return count;
}

struct Outcome {
  int exit_code = -1;
  std::string output;  // the trainer's stdout and stderr
  std::string log;     // train.log
  Json report;         // plugin-report.json
  fs::path run_dir;
};

class Jail : public ::testing::TestWithParam<As> {
 protected:
  void TearDown() override {
    if (!tmp_.empty()) fs::remove_all(tmp_);
    if (!delegated_.empty()) remove_cgroup(delegated_);
  }

  bool ordinary() const { return GetParam() != As::root; }

  // A cgroup2 folder of the test's own cgroup, handed to the user; empty where none can be made.
  fs::path delegate_cgroup2() const {
    const fs::path own = bulkhead::ResourceGroup::own_cgroup2();
    if (own.empty()) return {};
    const fs::path dir = own / ("bulkhead-jail-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_));
    if (::mkdir(dir.c_str(), 0755) != 0) return {};
    for (const fs::path& path : {dir, dir / "cgroup.procs", dir / "cgroup.subtree_control", dir / "cgroup.threads"})
      ::chown(path.c_str(), user_.pw_uid, user_.pw_gid);
    return dir;
  }

  static void remove_cgroup(const fs::path& dir) {
    std::error_code ignored;
    for (const auto& child : fs::directory_iterator(dir, ignored))
      if (child.is_directory(ignored)) remove_cgroup(child.path());
    ::rmdir(dir.c_str());
  }

  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) / "bulkhead-jail" / (std::string(info->name()) + "-" + name(GetParam()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    if (ordinary()) {
      auto user = ordinary_user();
      if (!user) GTEST_SKIP() << "cannot create an ordinary user here (the tests are not root)";
      user_ = *user;
      // The user must reach the build and the sources, as it would its own install.
      const std::string probe = "setpriv --reuid=" + std::to_string(user_.pw_uid) + " --regid=" + std::to_string(user_.pw_gid) +
                                " --clear-groups test -x " + BULKHEAD_EXE + " -a -r " + (bulkhead::paths::home() / "schemas").string();
      if (std::system(probe.c_str()) != 0)
        GTEST_SKIP() << "the ordinary user cannot read " << BULKHEAD_EXE << " (the checkout is in a folder only root can enter)";
      for (fs::path p = dir_; p != p.root_path(); p = p.parent_path()) ::chmod(p.c_str(), 0755);
      ::chown(dir_.c_str(), user_.pw_uid, user_.pw_gid);
      // The user's own TMPDIR (/tmp may be root's alone), short: socket paths must fit in 107 bytes.
      tmp_ = "/tmp/bulkhead-jail-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++);
      fs::create_directories(tmp_);
      ::chown(tmp_.c_str(), user_.pw_uid, user_.pw_gid);
    }
    if (GetParam() == As::user_cgroup2 && (delegated_ = delegate_cgroup2()).empty())
      GTEST_SKIP() << "no cgroup2 folder can be made to delegate here (" << bulkhead::ResourceGroup::own_cgroup2() << ")";
  }

  // A config of a tiny run with the attacker (and the C++ hook_logger beside it).
  Json config(const Json& attacker_options, const Json& limits = Json::object()) const {
    Json attacker = {{"name", (bulkhead::paths::home() / "tests" / "plugins" / "attacker").string()},
                     {"options", attacker_options}, {"max_restarts", 1000}};
    if (!limits.empty()) attacker["limits"] = limits;
    return {{"run_dir", (dir_ / "run").string()}, {"max_epochs", 2}, {"resolution", 16}, {"batch_size", 64},
            {"lr_warmup_steps", 2}, {"max_tokens", 16}, {"num_threads", 1}, {"num_workers", 1}, {"sample_every_n_epochs", 0},
            {"save_every_n_epochs", 0}, {"sample_inference_steps", 2},
            {"model", {{"channels", 8}, {"channel_mults", {1, 2}}, {"embed_dim", 32}}},
            {"plugins", Json::array({attacker, "hook_logger"})}};
  }

  // Starts `bulkhead train` as root or as the ordinary user, with `secret` in its environment.
  pid_t start(const Json& config) {
    config_file_ = dir_ / "train.json";
    std::ofstream(config_file_) << config.dump(2);
    if (ordinary()) {
      ::chown(config_file_.c_str(), user_.pw_uid, user_.pw_gid);
    }
    return spawn({"train", "--config", config_file_.string()});
  }

  // Starts `bulkhead ARGS...` as root or as the ordinary user (privileges dropped in the child),
  // its stdout and stderr into output_file_.
  pid_t spawn(const std::vector<std::string>& args) {
    output_file_ = dir_ / "output.txt";
    std::vector<char*> argv = {const_cast<char*>(BULKHEAD_EXE)};
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    const pid_t child = fork();
    if (child == 0) {
      const int fd = ::open(output_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0) _exit(126);
      setenv("AWS_SECRET_ACCESS_KEY", secret_.c_str(), 1);
      setenv("BULKHEAD_PLUGIN_CONSOLE_LEVEL", "info", 1);
      ::chdir(dir_.c_str());
      // Into the delegated cgroup while still root, as systemd puts a scope's first process.
      if (!delegated_.empty()) std::ofstream(delegated_ / "cgroup.procs") << "0";
      if (ordinary()) {
        setenv("HOME", dir_.c_str(), 1);
        setenv("TMPDIR", tmp_.c_str(), 1);
        if (setgroups(0, nullptr) != 0 || setgid(user_.pw_gid) != 0 || setuid(user_.pw_uid) != 0) _exit(125);
      }
      execv(BULKHEAD_EXE, argv.data());
      _exit(127);
    }
    return child;
  }

  Outcome finish(pid_t pid) {
    Outcome run;
    int status = 0;
    waitpid(pid, &status, 0);
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    run.run_dir = dir_ / "run";
    run.output = read_text(output_file_);
    run.log = read_text(run.run_dir / "train.log");
    std::ifstream report(run.run_dir / "plugin-report.json");
    if (report) run.report = Json::parse(report);
    return run;
  }

  Outcome train(const Json& config) { return finish(start(config)); }

  // The steps of the same run without the attacker, trained once per test program.
  long reference_steps() {
    static long steps = [this] {
      Json plain = config(Json::object());
      plain["plugins"] = Json::array({"hook_logger"});
      plain["run_dir"] = (dir_ / "reference").string();
      std::ofstream(dir_ / "reference.json") << plain.dump(2);
      const std::string command = std::string(BULKHEAD_EXE) + " train --config " + (dir_ / "reference.json").string() + " >/dev/null 2>&1";
      return std::system(command.c_str()) == 0 ? loss_records(dir_ / "reference") : -1;
    }();
    return steps;
  }

  // The line the attacker printed about `attack`, for the failure messages.
  static std::string lines_about(const Outcome& run, const std::string& attack) {
    std::istringstream in(run.output);
    std::string found;
    for (std::string line; std::getline(in, line);)
      if (line.find("attack " + attack) != std::string::npos) found += line + "\n";
    return found;
  }

  static Json plugin(const Outcome& run, const std::string& plugin_name) {
    for (const auto& p : run.report.value("plugins", Json::array()))
      if (p["name"] == plugin_name) return p;
    return Json();
  }

  fs::path dir_, tmp_;
  fs::path delegated_;  // As::user_cgroup2: the cgroup handed to the user
  fs::path config_file_, output_file_;
  static inline int counter_ = 0;
  passwd user_{};
  std::string secret_ = random_secret();
};

bool process_named_alive(const std::string& comm) {
  for (pid_t pid : proc_pids()) {
    std::string name = read_proc_file("/proc/" + std::to_string(pid) + "/comm").value_or("");
    if (!name.empty() && name.back() == '\n') name.pop_back();
    if (name == comm) return true;
  }
  return false;
}

bool descends_from(pid_t pid, pid_t ancestor) {
  for (int depth = 0; pid > 1 && depth < 32; ++depth) {
    const auto stat = read_proc_stat(pid);
    if (!stat) return false;
    if (stat->ppid == ancestor) return true;
    pid = stat->ppid;
  }
  return false;
}

struct FileState {
  std::string bytes;
  timespec modified{};
  explicit FileState(const fs::path& path) : bytes(read_text(path)) {
    struct stat info{};
    ::stat(path.c_str(), &info);
    modified = info.st_mtim;
  }
  bool operator==(const FileState& other) const {
    return bytes == other.bytes && modified.tv_sec == other.modified.tv_sec && modified.tv_nsec == other.modified.tv_nsec;
  }
};

TEST_P(Jail, FilesTheTrainerAndOtherPluginsAreOutOfReach) {
  const fs::path secret = dir_ / "secret.txt";
  std::ofstream(secret) << secret_;
  ::chmod(secret.c_str(), 0600);
  if (ordinary()) ::chown(secret.c_str(), user_.pw_uid, user_.pw_gid);  // the user's own secret
  const fs::path victim = dir_ / "victim.txt";
  std::ofstream(victim) << "untouched\n";
  if (ordinary()) ::chown(victim.c_str(), user_.pw_uid, user_.pw_gid);
  const fs::path host = bulkhead::paths::plugin_host();
  const fs::path other_plugin = bulkhead::paths::home() / "plugins" / "hook_logger" / "plugin.json";
  const Json options = {{"attacks", {"files", "proc", "env", "sockets"}},
                        {"read_paths", {secret.string(), "/etc/shadow", (dir_ / "train.json").string()}},
                        {"write_paths", {victim.string(), (dir_ / "train.json").string()}},
                        {"touch_paths", {host.string(), other_plugin.string()}},
                        {"secret_env", "AWS_SECRET_ACCESS_KEY"}};
  const Json cfg = config(options);
  std::ofstream(dir_ / "train.json") << cfg.dump(2);
  const FileState host_before(host), plugin_before(other_plugin), victim_before(victim);

  Outcome run = train(cfg);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("attacker done"), std::string::npos) << run.output;
  // Nothing secret reached any output the plugin has: its stdout and stderr, train.log.
  EXPECT_EQ(run.output.find(secret_), std::string::npos) << lines_about(run, "read");
  EXPECT_EQ(run.log.find(secret_), std::string::npos);
  std::ifstream shadow("/etc/shadow");
  std::string first_line;
  std::getline(shadow, first_line);
  EXPECT_TRUE(first_line.empty() || run.output.find(first_line) == std::string::npos) << "/etc/shadow was read";
  // Nothing was written: the victim, the config, the host binary, another plugin.
  EXPECT_TRUE(victim_before == FileState(victim)) << lines_about(run, "write");
  EXPECT_EQ(read_text(dir_ / "train.json").find("PWNED"), std::string::npos);
  EXPECT_TRUE(host_before == FileState(host)) << lines_about(run, "touch");
  EXPECT_TRUE(plugin_before == FileState(other_plugin)) << lines_about(run, "touch");
  // The trainer was neither found nor killed, and no plugin spoke in another's name.
  EXPECT_NE(run.output.find("attack find the trainer in /proc: blocked"), std::string::npos) << lines_about(run, "find");
  EXPECT_EQ(run.log.find("set grad_accum"), std::string::npos);
  EXPECT_NE(run.output.find("attack find other plugins' sockets: blocked"), std::string::npos) << lines_about(run, "find");
  // Training went on to the end, every step.
  EXPECT_EQ(loss_records(run.run_dir), reference_steps()) << run.output;
}

TEST_P(Jail, TheNetworkIsUnreachable) {
  // Listeners on the loopback addresses the plugin would try: TCP and UDP, IPv4 and IPv6.
  auto listen_on = [](int family, int type) {
    const int fd = ::socket(family, type | SOCK_NONBLOCK, 0);
    if (family == AF_INET) {
      sockaddr_in at{};
      at.sin_family = AF_INET;
      at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ::bind(fd, reinterpret_cast<sockaddr*>(&at), sizeof at);
    } else {
      sockaddr_in6 at{};
      at.sin6_family = AF_INET6;
      at.sin6_addr = in6addr_loopback;
      ::bind(fd, reinterpret_cast<sockaddr*>(&at), sizeof at);
    }
    if (type == SOCK_STREAM) ::listen(fd, 8);
    return fd;
  };
  auto port_of = [](int fd) {
    sockaddr_storage at{};
    socklen_t size = sizeof at;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&at), &size);
    return at.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&at)->sin_port)
                                   : ntohs(reinterpret_cast<sockaddr_in6*>(&at)->sin6_port);
  };
  std::vector<int> listeners = {listen_on(AF_INET, SOCK_STREAM), listen_on(AF_INET, SOCK_DGRAM), listen_on(AF_INET6, SOCK_STREAM),
                                listen_on(AF_INET6, SOCK_DGRAM)};
  Json ports = Json::array();
  for (int fd : listeners) ports.push_back(port_of(fd));

  Outcome run = train(config({{"attacks", {"network"}}, {"ports", ports}}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  for (int fd : listeners) {
    char buffer[64];
    EXPECT_LT(::accept(fd, nullptr, nullptr), 0) << "a connection reached a listener\n" << lines_about(run, "tcp");
    EXPECT_LT(::recv(fd, buffer, sizeof buffer, 0), 0) << "a datagram reached a listener\n" << lines_about(run, "udp");
    ::close(fd);
  }
  for (const char* attack : {"socket(AF_INET | 1 << 32)", "socket(AF_NETLINK)", "socket(AF_PACKET)", "io_uring_setup"})
    EXPECT_NE(run.output.find(std::string("attack ") + attack + ": blocked"), std::string::npos) << lines_about(run, attack);
}

// From the outside, while it runs: the plugin's processes are in their own pid, mount, network
// and user namespaces, hold no capability, have no-new-privs and a seccomp filter, and (when the
// trainer is root) belong to an unprivileged user.
TEST_P(Jail, PluginProcessesHoldNoPrivilege) {
  const pid_t trainer = start(config({{"attacks", {"privileges"}}}));
  // "" once the process has ended (a host that finished its attacks may end at any moment).
  auto ns = [](pid_t pid, const char* kind) {
    std::error_code gone;
    return fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/" + kind, gone).string();
  };
  std::vector<pid_t> hosts;
  for (int i = 0; i < 200 && hosts.empty(); ++i) {
    std::this_thread::sleep_for(50ms);
    for (pid_t pid : proc_pids()) {
      const std::string proc = "/proc/" + std::to_string(pid);
      const std::string program = read_text(proc + "/cmdline").c_str();  // argv[0]
      if (program.size() >= 20 && program.compare(program.size() - 20, 20, "bulkhead-plugin-host") == 0 &&
          descends_from(pid, trainer) && read_text(proc + "/status").find("Seccomp:\t2") != std::string::npos)
        hosts.push_back(pid);
    }
  }
  ASSERT_FALSE(hosts.empty()) << "no plugin host found";
  for (pid_t host : hosts) {
    const std::string status = read_text("/proc/" + std::to_string(host) + "/status");
    if (status.empty()) continue;  // ended meanwhile
    EXPECT_NE(status.find("CapEff:\t0000000000000000"), std::string::npos) << status;
    EXPECT_NE(status.find("NoNewPrivs:\t1"), std::string::npos) << status;
    if (GetParam() == As::root) {
      EXPECT_NE(status.find("Uid:\t65534"), std::string::npos) << status;
    }
    for (const char* kind : {"pid", "mnt", "net", "user", "ipc", "uts"}) {
      const std::string host_ns = ns(host, kind);
      if (!host_ns.empty()) {
        EXPECT_NE(host_ns, ns(trainer, kind)) << kind << " namespace shared with the trainer";
      }
    }
  }
  Outcome run = finish(trainer);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  for (const char* attack : {"setuid(0)", "unshare(CLONE_NEWUSER)", "clone(CLONE_NEWUSER)", "mount tmpfs", "fsopen(tmpfs)",
                             "ptrace(PTRACE_ATTACH, 1)", "process_vm_readv(1)", "bpf", "keyctl", "perf_event_open", "setsid"})
    EXPECT_NE(run.output.find(std::string("attack ") + attack + ": blocked"), std::string::npos) << lines_about(run, attack);
}

TEST_P(Jail, NothingOutlivesTheTrainer) {
  const std::string orphan = "orphan-" + name(GetParam());
  const pid_t trainer = start(config({{"attacks", {"outlive"}}, {"orphan_name", orphan}}));
  for (int i = 0; i < 600 && read_text(output_file_).find("attack SIGKILL the warden") == std::string::npos; ++i)
    std::this_thread::sleep_for(50ms);
  std::this_thread::sleep_for(300ms);
  ::kill(trainer, SIGKILL);
  finish(trainer);
  bool alive = true;
  for (int i = 0; i < 100 && alive; ++i) {
    alive = process_named_alive(orphan);
    if (alive) std::this_thread::sleep_for(50ms);
  }
  EXPECT_FALSE(alive) << read_text(output_file_);
}

// Limits that hold for the plugin's whole tree, hit and named in the report; training finishes.
// As root a cgroup and the warden's count both hold them; as an ordinary user (no cgroup of its
// own here) the warden's count alone.
class TreeLimits : public Jail {
 protected:
  void expect_fault(const std::string& attack, const Json& limits, const std::string& named) {
    Outcome run = train(config({{"attacks", {attack}}}, limits));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    const Json attacker = plugin(run, "attacker");
    EXPECT_NE(attacker.dump().find(named), std::string::npos) << attacker.dump(2) << "\n" << run.output;
    EXPECT_EQ(loss_records(run.run_dir), reference_steps());
    // train.log says from the start which layers hold them.
    EXPECT_NE(run.log.find("jail layers: "), std::string::npos) << run.log;
    EXPECT_NE(run.log.find("accounting floor: each plugin's warden counts its whole tree"), std::string::npos) << run.log;
    if (GetParam() == As::user_cgroup2) {
      EXPECT_NE(run.log.find("plugins in cgroup v2 at " + delegated_.string() + "/bulkhead-"), std::string::npos)
          << "the delegated cgroup2 subtree holds the plugins' groups\n" << run.log;
    }
  }
};

TEST_P(TreeLimits, AForkBombHitsTheProcessLimit) {
  expect_fault("fork_bomb", {{"processes", 32}}, "process limit of 32 reached");
}

TEST_P(TreeLimits, ChildrenTogetherHitTheMemoryLimit) {
  expect_fault("memory_children", {{"memory_mb", 512}, {"address_space_mb", 1024}}, "memory limit of 512 MB reached");
}

TEST_P(TreeLimits, ChildrenTogetherHitTheCpuLimit) {
  expect_fault("cpu_children", {{"cpu_time_s", 2}}, "CPU time limit of 2 s reached");
}

// `bulkhead doctor` names each layer and whether it holds for whoever runs it; here every layer
// that keeps a plugin's whole tree within its limits does, for root and for an ordinary user.
TEST_P(Jail, DoctorSaysWhichLayersHold) {
  Outcome run = finish(spawn({"doctor"}));
  EXPECT_EQ(run.exit_code, 0) << run.output;
  for (const char* layer : {"full jail", "user namespace", "uid mapping", "seccomp", "Landlock", "cgroups", "RLIMIT_NPROC"})
    EXPECT_NE(run.output.find(std::string(layer) + ": "), std::string::npos) << layer << " is not named\n" << run.output;
  EXPECT_NE(run.output.find("  on   accounting floor: "), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("  on   full jail: "), std::string::npos) << run.output;
  const std::string identity = GetParam() == As::root ? "plugins run as 'nobody' (uid 65534)"
                                                      : "plugins run as this user (uid " + std::to_string(user_.pw_uid) + ")";
  EXPECT_NE(run.output.find(identity), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("plugins run fully jailed here"), std::string::npos) << run.output;
}

TEST_P(Jail, TmpIsPrivateAndBounded) {
  Outcome run = train(config({{"attacks", {"fill_tmp"}}}, {{"tmp_mb", 64}}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("attack fill /tmp with 2 GB: blocked: 6"), std::string::npos) << lines_about(run, "fill");
  EXPECT_FALSE(fs::exists("/tmp/attacker-fill"));
  EXPECT_EQ(loss_records(run.run_dir), reference_steps());
}

TEST_P(Jail, TheScratchFolderIsBounded) {
  Outcome run = train(config({{"attacks", {"fill_scratch"}}}, {{"scratch_mb", 64}}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(plugin(run, "attacker").dump().find("scratch folder over its limit of 64 MB"), std::string::npos)
      << plugin(run, "attacker").dump(2) << "\n" << run.output;
  EXPECT_EQ(loss_records(run.run_dir), reference_steps());
}

// What a manifest asks beyond the default view must be granted in train.json, item by item; once
// granted, exactly that is open.
TEST_P(Jail, PermissionsAreAskedInTheManifestAndGrantedInTrainJson) {
  const fs::path shared = dir_ / "shared";
  fs::create_directories(shared);
  std::ofstream(shared / "notes.txt") << secret_;  // readable by the plugin's user, once granted
  const fs::path plugin = dir_ / "needy";
  fs::create_directories(plugin);
  Json manifest = Json::parse(read_text(bulkhead::paths::home() / "tests" / "plugins" / "attacker" / "plugin.json"));
  manifest["name"] = "needy";
  manifest["permissions"] = {{"read", {shared.string()}}, {"env", {"AWS_SECRET_ACCESS_KEY"}}};
  std::ofstream(plugin / "plugin.json") << manifest.dump(2);

  Json cfg = config(Json::object());
  cfg["plugins"] = {{{"name", plugin.string()},
                     {"options", {{"attacks", {"files", "env"}}, {"read_paths", {(shared / "notes.txt").string()}},
                                  {"secret_env", "AWS_SECRET_ACCESS_KEY"}}}}};
  Outcome refused = train(cfg);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  for (const std::string& named : {"read " + shared.string(), std::string("env AWS_SECRET_ACCESS_KEY"), (plugin / "plugin.json").string(),
                                   (dir_ / "train.json").string(), std::string("\"grant\"")})
    EXPECT_NE(refused.output.find(named), std::string::npos) << named << " is not named\n" << refused.output;
  EXPECT_EQ(refused.output.find(secret_), std::string::npos);

  cfg["plugins"][0]["grant"] = {{"read", {shared.string()}}, {"env", {"AWS_SECRET_ACCESS_KEY"}}};
  fs::remove_all(dir_ / "run");
  Outcome granted = train(cfg);
  ASSERT_EQ(granted.exit_code, 0) << granted.output;
  EXPECT_NE(granted.output.find("attack read " + (shared / "notes.txt").string() + ": SUCCEEDED: " + secret_), std::string::npos)
      << lines_about(granted, "read");
  EXPECT_NE(granted.output.find("attack read $AWS_SECRET_ACCESS_KEY: SUCCEEDED: " + secret_), std::string::npos)
      << lines_about(granted, "read");

  const std::string list = std::string(BULKHEAD_EXE) + " plugins --plugins-dir " + dir_.string() + " list 2>&1";
  FILE* pipe = popen(list.c_str(), "r");
  std::string listed;
  for (char line[512]; std::fgets(line, sizeof line, pipe) != nullptr;) listed += line;
  pclose(pipe);
  EXPECT_NE(listed.find("permissions: read " + shared.string() + ", env AWS_SECRET_ACCESS_KEY"), std::string::npos) << listed;
}

// A machine that forbids user namespaces (as many containers do), made for real: the trainer runs
// as an ordinary user inside a user namespace whose max_user_namespaces is 0.
class NoUserNamespaces : public ::testing::Test {
 protected:
  void SetUp() override {
    if (getuid() != 0) GTEST_SKIP() << "building the restricted machine needs root";
    dir_ = fs::path(::testing::TempDir()) / "bulkhead-jail" /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "tmp");
    fs::permissions(dir_, fs::perms::all);
    fs::permissions(dir_ / "tmp", fs::perms::all);
  }

  // Exit code and output of `bulkhead train` with `config` there.
  std::pair<int, std::string> train(const Json& config) {
    std::ofstream(dir_ / "train.json") << config.dump(2);
    int ready[2], mapped[2];
    if (pipe(ready) != 0 || pipe(mapped) != 0) return {-1, "pipe"};
    const pid_t child = fork();
    if (child == 0) {
      char byte = 0;
      if (unshare(CLONE_NEWUSER) != 0) _exit(120);
      (void)!write(ready[1], &byte, 1);
      (void)!read(mapped[0], &byte, 1);
      const int fd = ::open((dir_ / "output.txt").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      if (setresgid(0, 0, 0) != 0 || setresuid(0, 0, 0) != 0) _exit(121);
      std::ofstream("/proc/sys/user/max_user_namespaces") << 0;
      if (setgroups(0, nullptr) != 0 || setresgid(1000, 1000, 1000) != 0 || setresuid(1000, 1000, 1000) != 0) _exit(122);
      setenv("TMPDIR", (dir_ / "tmp").c_str(), 1);
      execl(BULKHEAD_EXE, BULKHEAD_EXE, "train", "--config", (dir_ / "train.json").c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    char byte = 0;
    (void)!read(ready[0], &byte, 1);
    for (const char* map : {"uid_map", "gid_map"})
      std::ofstream("/proc/" + std::to_string(child) + "/" + map) << "0 0 65536";
    (void)!write(mapped[1], &byte, 1);
    int status = 0;
    waitpid(child, &status, 0);
    for (int fd : {ready[0], ready[1], mapped[0], mapped[1]}) ::close(fd);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(dir_ / "output.txt")};
  }

  Json config() const {
    return {{"run_dir", (dir_ / "run").string()}, {"max_epochs", 1}, {"resolution", 16}, {"batch_size", 64},
            {"max_tokens", 16}, {"num_threads", 1}, {"num_workers", 1}, {"sample_every_n_epochs", 0},
            {"save_every_n_epochs", 0}, {"sample_inference_steps", 2},
            {"model", {{"channels", 8}, {"channel_mults", {1, 2}}, {"embed_dim", 32}}}, {"plugins", {"hook_logger"}}};
  }

  fs::path dir_;
};

TEST_F(NoUserNamespaces, PluginsDoNotStartWithoutTheirJail) {
  auto [code, output] = train(config());
  EXPECT_EQ(code, 2) << output;
  EXPECT_NE(output.find("plugins cannot be jailed on this machine"), std::string::npos) << output;
  EXPECT_NE(output.find("namespace"), std::string::npos) << "the missing feature is named\n" << output;
  EXPECT_NE(output.find("\"jail\": {\"mode\": \"weak\"}"), std::string::npos) << "the way out is named\n" << output;
  EXPECT_FALSE(fs::exists(dir_ / "run" / "checkpoints")) << "training must not begin";
}

TEST_F(NoUserNamespaces, TheWeakJailRunsThemAndSaysSoEverywhere) {
  Json weak = config();
  weak["jail"] = {{"mode", "weak"}};
  auto [code, output] = train(weak);
  ASSERT_EQ(code, 0) << output;
  const std::string warning = "PLUGINS ARE NOT FULLY JAILED";
  EXPECT_NE(output.find(warning), std::string::npos) << "on the console\n" << output;
  EXPECT_NE(read_text(dir_ / "run" / "train.log").find(warning), std::string::npos) << "in train.log";
  const std::string report = read_text(dir_ / "run" / "plugin-report.json");
  EXPECT_NE(report.find("\"mode\": \"weak\""), std::string::npos) << report;
  EXPECT_NE(report.find(warning), std::string::npos) << report;
}

INSTANTIATE_TEST_SUITE_P(AsRootAndAsUser, Jail, ::testing::Values(As::root, As::user),
                         [](const auto& info) { return name(info.param); });
INSTANTIATE_TEST_SUITE_P(AsRootAndAsUser, TreeLimits, ::testing::Values(As::root, As::user, As::user_cgroup2),
                         [](const auto& info) { return name(info.param); });

}  // namespace
