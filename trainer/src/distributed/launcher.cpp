#include "distributed/launcher.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <optional>
#include <thread>

#include "common/log.hpp"
#include "train/trainer.hpp"

namespace bulkhead {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr auto kGraceAfterSignal = 30s;  // then SIGKILL: a rank that does not stop is not waited for forever

struct Rank {
  int rank = 0;
  pid_t pid = -1;
  std::optional<int> status;  // waitpid's, once it ended
  bool signalled_by_us = false;
};

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

bool has_checkpoint(const fs::path& run_dir) {
  std::error_code error;
  for (auto it = fs::directory_iterator(run_dir / "checkpoints", error); !error && it != fs::directory_iterator(); ++it)
    if (it->path().extension() == ".pt") return true;
  return false;
}

// A restart without a checkpoint starts the run again: what the first start wrote goes (train.log,
// which says why, and the other ranks' logs stay).
void clear_started_run(const fs::path& run_dir) {
  for (const char* name : {"metrics.jsonl", "tensorboard", "samples", "loss.png", "plugin-report.json", "plugin-report.live.json"})
    fs::remove_all(run_dir / name);
}

class Launch {
 public:
  explicit Launch(const LaunchOptions& options) : options_(options), log_(logger("launcher")) {}

  int run() {
    const int world = options_.nproc * options_.nnodes;
    fs::path resume = options_.resume;
    for (int attempt = 0;; ++attempt) {
      start_ranks(world, attempt, resume);
      watch();
      const int outcome = outcome_of_attempt();
      if (outcome >= 0) return outcome;
      if (attempt >= options_.max_rank_restarts) {
        log_->error("giving up: the ranks failed {} time(s) (max_rank_restarts {})", attempt + 1, options_.max_rank_restarts);
        return 1;
      }
      resume = has_checkpoint(options_.run_dir) ? options_.run_dir : fs::path();
      if (!resume.empty()) {
        log_->warn("restarting all {} ranks from the last checkpoint in {} (restart {} of {})", world,
                   (options_.run_dir / "checkpoints").string(), attempt + 1, options_.max_rank_restarts);
      } else {
        if (options_.node_rank == 0) clear_started_run(options_.run_dir);
        log_->warn("restarting all {} ranks from the start: no checkpoint yet (restart {} of {})", world, attempt + 1,
                   options_.max_rank_restarts);
      }
    }
  }

 private:
  std::string store(int attempt) const {
    if (options_.nnodes > 1) return "tcp:" + options_.master_addr + ":" + std::to_string(options_.master_port);
    const fs::path file = options_.run_dir / "ranks" / ("rendezvous-" + std::to_string(attempt));
    fs::remove(file);
    return "file:" + file.string();
  }

  std::vector<std::string> command(int rank, int world, const fs::path& resume) const {
    std::vector<std::string> args = {fs::read_symlink("/proc/self/exe").string(), "train"};
    args.insert(args.end(), options_.train_args.begin(), options_.train_args.end());
    args.insert(args.end(), {"--run-dir", options_.run_dir.string()});
    // Only rank 0 reads the checkpoint, but the ranks of this machine take the run's config from it too.
    if (!resume.empty()) args.insert(args.end(), {"--resume", resume.string()});
    args.insert(args.end(), {"--rank", std::to_string(rank), "--world-size", std::to_string(world), "--local-rank",
                             std::to_string(rank % options_.nproc), "--local-world-size", std::to_string(options_.nproc),
                             "--rank-store", store_});
    return args;
  }

  void start_ranks(int world, int attempt, const fs::path& resume) {
    fs::create_directories(options_.run_dir / "ranks");
    store_ = store(attempt);
    ranks_.clear();
    for (int local = 0; local < options_.nproc; ++local) {
      const int rank = options_.node_rank * options_.nproc + local;
      Rank started;
      started.rank = rank;
      started.pid = spawn(rank, command(rank, world, resume));
      log_->info("rank {} of {}: pid {}", rank, world, started.pid);
      ranks_.push_back(started);
    }
  }

  pid_t spawn(int rank, const std::vector<std::string>& args) const {
    fs::path console;
    if (rank != 0) {
      console = options_.run_dir / "ranks" / ("rank-" + std::to_string(rank));
      fs::create_directories(console);
      console /= "console.log";
    }
    std::vector<char*> argv;
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("cannot start rank ") + std::to_string(rank) + ": " + std::strerror(errno));
    if (pid == 0) {
      // Its own process group: a Ctrl-C reaches the launcher, which passes it on once. A launcher
      // that dies (SIGKILL) still stops its ranks: they get SIGTERM.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);
      if (!console.empty()) {
        const int fd = ::open(console.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) ::dup2(fd, STDOUT_FILENO), ::dup2(fd, STDERR_FILENO);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    return pid;
  }

  void signal_all(int signal) {
    for (auto& rank : ranks_)
      if (!rank.status) {
        rank.signalled_by_us = true;
        ::kill(rank.pid, signal);
      }
  }

  // Until every rank has ended. The first that ends badly stops the others (they would only wait
  // for it); a stop signal is passed on once; SIGKILL for whoever is still there kGraceAfterSignal later.
  void watch() {
    std::optional<std::chrono::steady_clock::time_point> kill_at;
    int forwarded = 0;
    failed_ = -1;
    for (std::size_t alive = ranks_.size(); alive > 0;) {
      for (std::size_t i = 0; i < ranks_.size(); ++i) {
        auto& rank = ranks_[i];
        int status = 0;
        if (rank.status || ::waitpid(rank.pid, &status, WNOHANG) != rank.pid) continue;
        rank.status = status;
        --alive;
        const bool bad = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (bad && failed_ < 0 && !forwarded) {
          failed_ = static_cast<int>(i);
          log_->error("rank {} (pid {}) {}: stopping the other ranks", rank.rank, rank.pid, describe(status));
          signal_all(SIGTERM);
          kill_at = std::chrono::steady_clock::now() + kGraceAfterSignal;
        }
      }
      const int signal = requested_interrupt();
      if (signal != 0 && signal != forwarded) {
        log_->warn("stop signal: passing it on to every rank; they stop at the next step boundary");
        signal_all(signal);
        forwarded = signal;
        kill_at = std::chrono::steady_clock::now() + kGraceAfterSignal;
      }
      if (kill_at && std::chrono::steady_clock::now() > *kill_at) {
        log_->error("ranks still running {} s after being asked to stop: killing them",
                    std::chrono::duration_cast<std::chrono::seconds>(kGraceAfterSignal).count());
        signal_all(SIGKILL);
        kill_at.reset();
      }
      if (alive > 0) std::this_thread::sleep_for(50ms);
    }
    forwarded_ = forwarded;
  }

  // The run's exit status, or -1: restart the ranks.
  int outcome_of_attempt() const {
    if (forwarded_) {  // the user stopped the run: rank 0 saved its checkpoint and says how it ended
      for (const auto& rank : ranks_)
        if (rank.rank == 0 && rank.status && WIFEXITED(*rank.status)) return WEXITSTATUS(*rank.status);
      return 128 + forwarded_;
    }
    if (failed_ < 0) return 0;
    // A run that failed as one process would (a plugin under "abort", a bad config or data) fails
    // the same way again: it ends. A rank killed, or one whose peers vanished, is restarted.
    const int status = *ranks_[failed_].status;
    if (WIFEXITED(status) && (WEXITSTATUS(status) == 1 || WEXITSTATUS(status) == 2)) return WEXITSTATUS(status);
    return -1;
  }

  const LaunchOptions& options_;
  std::shared_ptr<spdlog::logger> log_;
  std::string store_;
  std::vector<Rank> ranks_;
  int failed_ = -1, forwarded_ = 0;
};

}  // namespace

int launch_ranks(const LaunchOptions& options) { return Launch(options).run(); }

}  // namespace bulkhead
