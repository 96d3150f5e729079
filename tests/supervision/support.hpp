// support.hpp — helpers for the supervision tests: real runners over real host processes.
#pragma once

#include <algorithm>
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/sinks/base_sink.h>

#include "common/log.hpp"
#include "common/paths.hpp"
#include "supervisor/plugin_runner.hpp"
#include "support/proc.hpp"

namespace bulkhead::test {

namespace fs = std::filesystem;

inline fs::path plugins_dir() { return paths::home() / "tests" / "plugins"; }

// The test plugins by name (fault, recorder, raw-fault), before any runner is made.
inline void use_test_plugins() { setenv("BULKHEAD_PLUGINS_PATH", plugins_dir().c_str(), 1); }

// A fresh run folder per runner (its plugin-scratch holds raw-fault's once-* markers).
inline RunInfo fresh_run() {
  static int counter = 0;
  RunInfo run;
  run.project_name = "supervision";
  run.run_dir = fs::temp_directory_path() /
                ("bulkhead-supervision-" + std::to_string(getpid()) + "-" + std::to_string(++counter));
  fs::remove_all(run.run_dir);
  fs::create_directories(run.run_dir);
  return run;
}

inline PluginSettings settings(const std::string& entry, Json options = Json::object()) {
  PluginSettings s;
  s.entry = entry;
  s.options = std::move(options);
  s.restart_backoff_ms = 10;
  s.max_restarts = 100;
  return s;
}

inline std::unique_ptr<PluginRunner> make_runner(const PluginSettings& s) {
  use_test_plugins();
  return std::make_unique<PluginRunner>(std::vector<PluginSettings>{s}, fresh_run());
}

inline Json plugin_report(const PluginRunner& runner) { return runner.report()["plugins"][0]; }

inline long counter(const PluginRunner& runner, const std::string& hook, const std::string& name) {
  const Json r = plugin_report(runner);
  if (!r["hooks"].contains(hook)) return 0;
  return r["hooks"][hook].value(name, 0L);
}

inline long faults(const PluginRunner& runner, const std::string& hook) {
  long total = 0;
  for (const char* name : {"errors", "timeouts", "crashes", "invalid_replies"}) total += counter(runner, hook, name);
  return total;
}

inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = std::chrono::seconds(10),
                       const std::function<void()>& poke = {}) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    if (poke) poke();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

inline Json epoch_kwargs() {
  return {{"epoch", 0}, {"global_step", 0}, {"epoch_length", 10}, {"project_name", "supervision"},
          {"log_folder", "/tmp"}, {"data_root", "/tmp"}};
}

inline Json step_kwargs(int step = 1) {
  return {{"epoch", 0}, {"local_step", step}, {"global_step", step}, {"project_name", "supervision"},
          {"log_folder", "/tmp"}, {"data_root", "/tmp"},
          {"batch", {{"captions", {"a cat"}}, {"shape", {1, 3, 8, 8}}}},
          {"ed_state", {{"grad_accum", 1}, {"lr", 0.001}, {"batch_size", 1}}},
          {"loss", 0.5}, {"lr", 0.001}, {"step_time_s", 0.01}, {"samples_per_s", 100.0}};
}

inline Image test_image(int width = 8, int height = 8) {
  Image image;
  image.width = width;
  image.height = height;
  image.mode = "RGB";
  image.data.resize(image.expected_size());
  for (std::size_t i = 0; i < image.data.size(); ++i) image.data[i] = std::uint8_t(i * 7);
  return image;
}

inline std::vector<ProcStat> children() {
  std::vector<ProcStat> out;
  for (const auto& p : all_proc_stats())
    if (p.ppid == getpid()) out.push_back(p);
  return out;
}

inline int zombies() {
  int count = 0;
  for (const auto& p : children()) count += p.state == 'Z';
  return count;
}

// pid, state and command line of every process of these groups still alive, for a failure message.
inline std::string describe_alive_in_groups(const std::vector<int>& groups) {
  std::string text;
  for (const auto& p : all_proc_stats())
    for (int g : groups)
      if (p.pgid == g && p.state != 'Z') {
        std::string command = read_proc_file("/proc/" + std::to_string(p.pid) + "/cmdline").value_or("");
        std::replace(command.begin(), command.end(), '\0', ' ');
        text += " [pid " + std::to_string(p.pid) + " state " + p.state + " ppid " + std::to_string(p.ppid) + ": " + command + "]";
      }
  return text;
}

// Processes still alive in any of these process groups (the hosts and whatever they started).
inline int alive_in_groups(const std::vector<int>& groups) {
  int count = 0;
  for (const auto& p : all_proc_stats())
    for (int g : groups)
      if (p.pgid == g && p.state != 'Z') ++count;
  return count;
}

inline std::size_t count_entries(const char* path) {
  std::size_t n = 0;
  DIR* dir = opendir(path);
  if (!dir) return 0;
  while (dirent* entry = readdir(dir)) n += entry->d_name[0] != '.';
  closedir(dir);
  return n;
}
inline std::size_t open_fds() { return count_entries("/proc/self/fd"); }
inline std::size_t threads() { return count_entries("/proc/self/task"); }

// A line of /proc/self/status in KiB, e.g. "VmRSS" (resident now) or "VmHWM" (its peak).
inline std::size_t memory_kib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(field + ":", 0) == 0) return std::stoul(line.substr(field.size() + 1));
  return 0;
}

// Collects what a logger writes, for assertions on loud messages.
class CaptureSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::string text() {
    std::lock_guard<std::mutex> lock(mutex_);
    return text_;
  }
  int count(const std::string& needle) {
    const std::string all = text();
    int n = 0;
    for (auto at = all.find(needle); at != std::string::npos; at = all.find(needle, at + 1)) ++n;
    return n;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    text_.append(msg.payload.data(), msg.payload.size());
    text_ += "\n";
  }
  void flush_() override {}

 private:
  std::string text_;
};

// Attaches a capture sink to a logger for the scope.
struct LogCapture {
  explicit LogCapture(const std::string& component) : log(logger(component)), sink(std::make_shared<CaptureSink>()) {
    log->sinks().push_back(sink);
  }
  ~LogCapture() {
    auto& sinks = log->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
  }
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<CaptureSink> sink;
};

}  // namespace bulkhead::test
