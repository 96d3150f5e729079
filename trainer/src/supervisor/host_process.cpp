#include "supervisor/host_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>

#include <boost/process.hpp>
#include <boost/process/extend.hpp>

#include <bulkhead/proc_stat.hpp>

#include "common/log.hpp"
#include "common/paths.hpp"
#include "supervisor/host_argv.hpp"
#include "supervisor/resource_group.hpp"

namespace bulkhead {
namespace bp = boost::process;
namespace fs = std::filesystem;

namespace {

// Plugin output is logged at a bounded rate: a flood never blocks the plugin (its pipe is
// always drained) nor fills the trainer's log.
class OutputRelay {
 public:
  OutputRelay(std::string plugin, std::string stream) : log_(logger("plugin:" + plugin)), stream_(std::move(stream)) {}

  void line(const std::string& text) {
    const auto now = std::chrono::steady_clock::now();
    if (now - window_start_ > std::chrono::seconds(1)) {
      report_dropped();
      window_start_ = now;
      lines_in_window_ = 0;
      dropped_ = 0;
    }
    if (++lines_in_window_ > kLinesPerSecond) {
      ++dropped_;
      return;
    }
    std::string shown = text.size() > kMaxLineBytes ? text.substr(0, kMaxLineBytes) + "…" : text;
    if (stream_ == "stderr")
      log_->warn("{}", shown);
    else
      log_->info("{}", shown);
  }

  // Says how many lines were dropped since the last report (at the next line, or when the stream ends).
  void report_dropped() {
    if (dropped_ > 0) log_->warn("{}: {} more lines dropped (over {} lines/s)", stream_, dropped_, kLinesPerSecond);
    dropped_ = 0;
  }

  static constexpr std::size_t kMaxLineBytes = 2000;

 private:
  static constexpr int kLinesPerSecond = 200;
  std::shared_ptr<spdlog::logger> log_;
  std::string stream_;
  std::chrono::steady_clock::time_point window_start_ = std::chrono::steady_clock::now();
  int lines_in_window_ = 0;
  long dropped_ = 0;
};

// Every host is started from this one thread, which lives as long as the trainer. The host's
// parent-death signal (PR_SET_PDEATHSIG) fires when the *thread* that forked it ends, not the
// process: a host restarted from a short-lived thread (a data-loader worker, a background
// restart) would otherwise be SIGKILLed as soon as that thread returned.
class Launcher {
 public:
  // Never destroyed: its thread must outlive every host. After fork() the child has no launcher
  // thread, so a process that is not the one that made it makes its own.
  static Launcher& instance() {
    static std::mutex guard;
    static Launcher* launcher = nullptr;
    static pid_t owner = 0;
    std::lock_guard<std::mutex> lock(guard);
    if (launcher == nullptr || owner != getpid()) {
      launcher = new Launcher;
      owner = getpid();
    }
    return *launcher;
  }
  void run(const std::function<void()>& work) {
    std::packaged_task<void()> task(work);
    auto done = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(task));
    }
    ready_.notify_one();
    done.get();  // rethrows what the launch threw
  }

 private:
  Launcher() {
    std::thread([this] {
      for (;;) {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !queue_.empty(); });
        auto task = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        task();
      }
    }).detach();
  }
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::packaged_task<void()>> queue_;
};

// Under bubblewrap a plugin killed by a signal comes back as an exit status of 128 + the signal.
std::string describe_status(int status, bool jailed) {
  if (WIFEXITED(status) && jailed && WEXITSTATUS(status) > 128 && WEXITSTATUS(status) <= 128 + SIGRTMAX)
    return describe_status(WEXITSTATUS(status) - 128, false);  // a raw status of N: killed by signal N
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "status " + std::to_string(status);
}

// Bytes a folder takes on disk (what a plugin can fill), links not followed.
std::int64_t disk_usage(const fs::path& folder) {
  std::int64_t bytes = 0;
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(folder, fs::directory_options::skip_permission_denied, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    struct stat info {};
    if (::lstat(it->path().c_str(), &info) == 0) bytes += std::int64_t(info.st_blocks) * 512;
  }
  return bytes;
}

TreeLimits tree_limits(const PluginLimits& l) { return {l.memory_mb, l.processes, l.cpu_time_s}; }

// A region as its variable names it: "<fd> [<fd>] <slots> <slot_bytes>".
std::string describe(const std::vector<int>& fds, const SharedRegion& region) {
  std::string text;
  for (const int fd : fds) text += std::to_string(fd) + " ";
  return text + std::to_string(region.slots()) + " " + std::to_string(region.slot_bytes());
}

}  // namespace

struct HostProcess::Impl {
  bp::ipstream out, err;
  bp::child child;
  std::thread out_reader, err_reader;
  std::mutex mutex;
  std::optional<int> raw_status;  // from waitpid, once reaped
  std::string last_error_line;
  bool jailed = false;
  std::unique_ptr<ResourceGroup> group;  // null where cgroups cannot be used
  TreeLimits tree_limits;                // what the group and the warden hold the whole tree to
  fs::path scratch;                      // its scratch folder outside the jail, if on disk
  std::int64_t scratch_limit = 0;        // bytes
  std::mutex breach_mutex;
  std::string breach;                    // the limit the tree went past, once it did
  std::chrono::steady_clock::time_point next_group_check{}, next_scratch_check{};

  // Polled with the child's state: a tree past its limits is killed, and that is why it ended.
  // The group every 50 ms; the scratch folder, a walk of the disk, every second.
  void check_limits(HostProcess& host) {
    std::lock_guard<std::mutex> lock(breach_mutex);
    const auto now = std::chrono::steady_clock::now();
    if (!breach.empty()) return;
    if (group && now >= next_group_check) {
      next_group_check = now + std::chrono::milliseconds(50);
      breach = group->breach();
    }
    if (breach.empty() && !scratch.empty() && now >= next_scratch_check) {
      next_scratch_check = now + std::chrono::seconds(1);
      if (disk_usage(scratch) > scratch_limit)
        breach = "scratch folder over its limit of " + std::to_string(scratch_limit >> 20) + " MB";
    }
    if (breach.empty()) return;
    if (group) group->kill();
    host.kill_group();
  }

  // Line by line, each line cut a little past what the relay shows: a plugin that writes
  // without newlines cannot grow the trainer's memory.
  void reader(bp::ipstream& stream, OutputRelay relay, bool remember) {
    std::string text;
    auto emit = [&] {
      relay.line(text);
      if (remember) {
        std::lock_guard<std::mutex> lock(mutex);
        last_error_line = text;
      }
      text.clear();
    };
    std::streambuf* buffer = stream.rdbuf();
    for (int c; (c = buffer->sbumpc()) != std::char_traits<char>::eof();) {
      if (c == '\n')
        emit();
      else if (text.size() <= OutputRelay::kMaxLineBytes)
        text.push_back(char(c));
    }
    if (!text.empty()) emit();
    relay.report_dropped();
  }

  // Reaps the child without blocking; Boost.Process's own bookkeeping is bypassed so that we
  // keep the full wait status (signal numbers included).
  bool reap(bool block) {
    std::lock_guard<std::mutex> lock(mutex);
    if (raw_status) return true;
    int status = 0;
    pid_t done = waitpid(child.id(), &status, block ? 0 : WNOHANG);
    if (done == child.id()) raw_status = status;
    return raw_status.has_value();
  }
};

HostProcess::HostProcess(const HostLaunch& launch) : impl_(std::make_unique<Impl>()) {
  const auto& m = launch.manifest;
  impl_->jailed = launch.jail.mode == JailSettings::Mode::full;
  impl_->scratch = launch.scratch_source;
  impl_->scratch_limit = std::int64_t(launch.limits.scratch_mb) << 20;
  impl_->tree_limits = tree_limits(launch.limits);
  if (impl_->jailed) impl_->group = ResourceGroup::create(launch.group_name, impl_->tree_limits);

  bp::environment env;
  for (const auto& [name, value] : plugin_environment(launch.granted.env)) env[name] = value;
  env["BULKHEAD_ENDPOINT"] = launch.endpoint;
  env["BULKHEAD_TOKEN"] = launch.token;
  // Inside the jail the trainer is in no namespace of the plugin's: its pid namespace's init is what dies with it.
  if (!impl_->jailed) env["BULKHEAD_PARENT_PID"] = std::to_string(getpid());
  env["BULKHEAD_HOME"] = paths::home().string();
  env["BULKHEAD_SCRATCH_DIR"] = launch.scratch_dir.string();
  env["BULKHEAD_SEARCH_PATH"] = join_paths(launch.search_path);
  env["BULKHEAD_PLUGIN_NAME"] = m.name;
  env["BULKHEAD_PLUGIN_VERSION"] = m.version;
  env["BULKHEAD_PLUGIN_DESCRIPTION"] = m.description;
  env["HOME"] = launch.scratch_dir.string();
  env["TMPDIR"] = impl_->jailed ? "/tmp" : launch.scratch_dir.string();
  if (!launch.python.empty()) env["BULKHEAD_PYTHON"] = launch.python.string();
  std::vector<int> inherited;  // the regions' memfds, which bubblewrap and the host pass on as they are
  if (const auto& region = launch.model_region) {
    env["BULKHEAD_MODEL_REGION"] = describe({region->fd()}, *region);
    inherited.push_back(region->fd());
  }
  if (const auto& region = launch.image_region) {
    env["BULKHEAD_IMAGE_REGION"] = describe({region->fd(), region->reply_fd()}, *region);
    inherited.insert(inherited.end(), {region->fd(), region->reply_fd()});
  }
  if (launch.serving_word >= 0) {
    // Spelled out, as every variable here, for the docs' environment table check (test_catalogue.py).
    static_assert(std::string_view(wire::kServingVariable) == "BULKHEAD_SERVING");
    env["BULKHEAD_SERVING"] = std::to_string(launch.serving_word);
    inherited.push_back(launch.serving_word);
  }

  std::vector<std::string> argv = host_arguments(launch, impl_->jailed);
  if (impl_->jailed) argv = jail_command(jail_view(launch), argv);
  const std::vector<std::string> args(argv.begin() + 1, argv.end());
  std::vector<const char*> join_files;
  if (impl_->group)
    for (const auto& file : impl_->group->join_files()) join_files.push_back(file.c_str());

  Launcher::instance().run([&] {
  impl_->child = bp::child(
      bp::exe = argv.front(), bp::args = args, env, bp::std_in < bp::null, bp::std_out > impl_->out, bp::std_err > impl_->err,
      // Its own process group from the first instruction, so a restart kills every descendant.
      bp::extend::on_exec_setup = [&join_files, &inherited](auto&) {
        setpgid(0, 0);
        // Into the resource group before anything else runs: every descendant is born inside.
        for (const char* file : join_files) {
          const int fd = ::open(file, O_WRONLY | O_CLOEXEC);
          if (fd >= 0 && ::write(fd, "0", 1) < 0) ::_exit(71);
          if (fd >= 0) ::close(fd);
        }
        // The plugin gets stdin, stdout and stderr only: no other descriptor of the trainer's
        // (sockets, pipes, files) may leak into it. CLOEXEC rather than close, so that
        // Boost.Process's own exec-error pipe keeps working.
        if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
          rlimit limit{};
          const int top = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 65536 ? int(limit.rlim_cur) : 65536;
          for (int fd = 3; fd < top; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
        // Except the shared regions (sealed: the plugin can map them, never resize them).
        for (const int fd : inherited) ::fcntl(fd, F_SETFD, 0);
      });
  });
  impl_->out_reader = std::thread(&Impl::reader, impl_.get(), std::ref(impl_->out), OutputRelay(m.name, "stdout"), false);
  impl_->err_reader = std::thread(&Impl::reader, impl_.get(), std::ref(impl_->err), OutputRelay(m.name, "stderr"), true);
}

std::filesystem::path host_socket_folder(const std::filesystem::path& runtime_dir, const std::string& name, int generation,
                                         const PluginIdentity& identity) {
  // Short: a socket's path must fit in 107 bytes, and TMPDIR may be deep already.
  const auto dir = runtime_dir / (std::to_string(std::hash<std::string>{}(name) % 100000) + "-" + std::to_string(generation));
  std::filesystem::create_directory(dir);
  ::chmod(dir.c_str(), 0700);
  if (identity.uid >= 0 && ::chown(dir.c_str(), identity.uid, identity.gid) != 0)
    throw std::runtime_error("cannot hand " + dir.string() + " to the plugin's user: " + std::strerror(errno));
  return dir;
}

std::string host_endpoint(const std::filesystem::path& socket_dir) {
  const std::string path = (socket_dir / "plugin.sock").string();
  if (path.size() > 107)
    throw std::runtime_error("the socket path " + path + " is longer than the 107 bytes a local socket allows: " +
                             "set TMPDIR to a shorter folder");
  return "ipc://" + path;
}

std::string HostProcess::full_jail_unavailable(const JailSettings& jail) {
  static std::mutex mutex;
  static std::optional<std::string> verdict;
  std::lock_guard<std::mutex> lock(mutex);
  if (verdict) return *verdict;
  const std::string advice =
      ". Bulkhead runs no plugin without its jail; to run plugins in the weaker jail (seccomp, rlimits and an "
      "environment allow-list, but no namespaces: a plugin could read and write what the trainer's user can), set "
      "\"jail\": {\"mode\": \"weak\"} in train.json (docs/sandbox.md)";
  const std::string bwrap = jail_command({}, {}).front();
  if (bp::search_path(bwrap).empty() && !fs::exists(bwrap))
    return *(verdict = "bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)" + advice);
  // The real host around /bin/true, with the identity and filter a plugin gets.
  fs::path sockets = fs::temp_directory_path() / ("bulkhead-probe-" + std::to_string(getpid()));
  fs::create_directories(sockets);
  HostLaunch probe;
  probe.manifest.runtime = "exec";
  probe.manifest.entry = "/bin/true";
  probe.identity = plugin_identity(jail);
  probe.socket_dir = sockets;
  probe.scratch_dir = kJailScratchDir;
  const auto argv = jail_command(jail_view(probe), host_arguments(probe, true));
  bp::ipstream errors;
  bp::child child(bp::exe = argv.front(), bp::args = std::vector<std::string>(argv.begin() + 1, argv.end()),
                  bp::std_in < bp::null, bp::std_out > bp::null, bp::std_err > errors);
  std::string line, last;
  while (std::getline(errors, line))
    if (!line.empty()) last = line;
  child.wait();
  fs::remove_all(sockets);
  if (child.exit_code() == 0) return *(verdict = "");
  return *(verdict = "plugins cannot be jailed on this machine: " + (last.empty() ? "bwrap exited " + std::to_string(child.exit_code()) : last) + advice);
}

HostProcess::~HostProcess() {
  if (!impl_->reap(false)) {
    kill_group();
    impl_->reap(true);
  }
  ::kill(-pid(), SIGKILL);  // any descendant still in the group would hold the output pipes open
  impl_->child.detach();  // already reaped by us
  if (impl_->out_reader.joinable()) impl_->out_reader.join();
  if (impl_->err_reader.joinable()) impl_->err_reader.join();
}

int HostProcess::pid() const { return impl_->child.id(); }

namespace {

// The parent of `pid`, 0 if it is gone.
long parent_of(long pid) {
  char state = 0;
  long parent = 0;
  return std::sscanf(proc_stat_fields(std::to_string(pid)).c_str(), " %c %ld", &state, &parent) == 2 ? parent : 0;
}

}  // namespace

bool HostProcess::owns(long pid) const {
  const long host = impl_->child.id();
  for (int depth = 0; pid > 1 && depth < 64; ++depth, pid = parent_of(pid))
    if (pid == host) return true;
  return false;
}

bool HostProcess::running() {
  if (impl_->reap(false)) return false;
  impl_->check_limits(*this);
  return true;
}

std::optional<int> HostProcess::exit_status() {
  impl_->reap(false);
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (impl_->raw_status && WIFEXITED(*impl_->raw_status)) return WEXITSTATUS(*impl_->raw_status);
  return std::nullopt;
}

std::string HostProcess::exit_description() {
  if (!impl_->reap(false)) return "";
  {
    std::lock_guard<std::mutex> lock(impl_->breach_mutex);
    if (!impl_->breach.empty()) return impl_->breach;
  }
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const int status = *impl_->raw_status;
  if (WIFEXITED(status)) {
    const std::string warden = impl_->tree_limits.warden_reason(WEXITSTATUS(status));
    if (!warden.empty()) return warden;
  }
  return describe_status(status, impl_->jailed);
}

std::string HostProcess::last_error_line() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->last_error_line;
}

void HostProcess::kill_group() {
  if (impl_->reap(false)) return;
  ::kill(-pid(), SIGKILL);
  ::kill(pid(), SIGKILL);
}

bool HostProcess::wait_for_exit(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!impl_->reap(false)) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void HostProcess::terminate(std::chrono::milliseconds grace) {
  if (impl_->reap(false)) return;
  ::kill(-pid(), SIGTERM);
  if (!wait_for_exit(grace)) {
    kill_group();
    impl_->reap(true);
  }
}

}  // namespace bulkhead
