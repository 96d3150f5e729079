#include "plugins/host_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>

#include <boost/process.hpp>
#include <boost/process/extend.hpp>

#include "common/log.hpp"
#include "common/paths.hpp"

namespace bulkhead {
namespace bp = boost::process;

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

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "status " + std::to_string(status);
}

}  // namespace

struct HostProcess::Impl {
  bp::ipstream out, err;
  bp::child child;
  std::thread out_reader, err_reader;
  std::mutex mutex;
  std::optional<int> raw_status;  // from waitpid, once reaped
  std::string last_error_line;

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
  auto env = boost::this_process::environment();
  bp::environment child_env = env;
  child_env["BULKHEAD_ENDPOINT"] = launch.endpoint;
  child_env["BULKHEAD_TOKEN"] = launch.token;
  child_env["BULKHEAD_PARENT_PID"] = std::to_string(getpid());
  child_env["BULKHEAD_HOME"] = paths::home().string();
  child_env["BULKHEAD_SCRATCH_DIR"] = launch.scratch_dir.string();
  child_env["BULKHEAD_SEARCH_PATH"] = launch.search_path;
  child_env["BULKHEAD_PLUGIN_NAME"] = m.name;
  child_env["BULKHEAD_PLUGIN_VERSION"] = m.version;
  child_env["BULKHEAD_PLUGIN_DESCRIPTION"] = m.description;
  if (!launch.python.empty()) child_env["BULKHEAD_PYTHON"] = launch.python.string();
  const auto& l = launch.limits;
  Launcher::instance().run([&] {
  impl_->child = bp::child(
      paths::plugin_host().string(), "--runtime", m.runtime, "--entry", m.resolved_entry(), "--plugin-dir", m.dir.string(),
      "--limit-address-space-mb", std::to_string(l.address_space_mb), "--limit-cpu-s", std::to_string(l.cpu_time_s),
      "--limit-open-files", std::to_string(l.open_files), "--limit-processes", std::to_string(l.processes),
      child_env, bp::std_in < bp::null, bp::std_out > impl_->out, bp::std_err > impl_->err,
      // Its own process group from the first instruction, so a restart kills every descendant.
      bp::extend::on_exec_setup = [](auto&) {
        setpgid(0, 0);
        // The plugin gets stdin, stdout and stderr only: no other descriptor of the trainer's
        // (sockets, pipes, files) may leak into it. CLOEXEC rather than close, so that
        // Boost.Process's own exec-error pipe keeps working.
        if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
          rlimit limit{};
          const int top = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 65536 ? int(limit.rlim_cur) : 65536;
          for (int fd = 3; fd < top; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
      });
  });
  impl_->out_reader = std::thread(&Impl::reader, impl_.get(), std::ref(impl_->out), OutputRelay(m.name, "stdout"), false);
  impl_->err_reader = std::thread(&Impl::reader, impl_.get(), std::ref(impl_->err), OutputRelay(m.name, "stderr"), true);
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

bool HostProcess::running() { return !impl_->reap(false); }

std::optional<int> HostProcess::exit_status() {
  impl_->reap(false);
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (impl_->raw_status && WIFEXITED(*impl_->raw_status)) return WEXITSTATUS(*impl_->raw_status);
  return std::nullopt;
}

std::string HostProcess::exit_description() {
  if (!impl_->reap(false)) return "";
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return describe_status(*impl_->raw_status);
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
