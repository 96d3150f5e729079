#include "common/log.hpp"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace bulkhead {
namespace {

std::mutex mutex;

// Sinks every logger writes to: the console, and the run's train.log once it is known.
spdlog::sink_ptr console_sink() {
  static spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  return sink;
}

std::vector<spdlog::sink_ptr>& shared_sinks() {
  static std::vector<spdlog::sink_ptr> sinks{console_sink()};
  return sinks;
}

// Plugins talk a lot (EveryDream2's example plugin logs every step): on the console their lines
// start at warning, so that the progress stays readable; train.log keeps every line.
// BULKHEAD_PLUGIN_CONSOLE_LEVEL (trace, debug, info, warning, error, off) changes that.
spdlog::sink_ptr plugin_console_sink() {
  static spdlog::sink_ptr sink = [] {
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    const char* level = std::getenv("BULKHEAD_PLUGIN_CONSOLE_LEVEL");
    console->set_level(level ? spdlog::level::from_str(level) : spdlog::level::warn);
    return console;
  }();
  return sink;
}

// The files FileLogs added, by path, so that stop_log_to_file can take one out again.
std::map<std::string, spdlog::sink_ptr>& file_sinks() {
  static std::map<std::string, spdlog::sink_ptr> sinks;
  return sinks;
}

bool is_plugin_component(const std::string& component) { return component.rfind("plugin:", 0) == 0; }

}  // namespace

std::shared_ptr<spdlog::logger> logger(const std::string& component) {
  std::lock_guard<std::mutex> lock(mutex);
  if (auto existing = spdlog::get(component)) return existing;
  std::vector<spdlog::sink_ptr> sinks = shared_sinks();
  if (is_plugin_component(component)) std::replace(sinks.begin(), sinks.end(), console_sink(), plugin_console_sink());
  auto created = std::make_shared<spdlog::logger>(component, sinks.begin(), sinks.end());
  created->set_pattern("[%H:%M:%S.%e] [%n] [%^%l%$] %v");
  created->set_level(spdlog::get_level());
  // Every line reaches train.log as it is written: `tail -f` follows the run, and a SIGKILL loses nothing.
  created->flush_on(spdlog::level::trace);
  spdlog::register_logger(created);
  return created;
}

FileLog::FileLog(std::string path) : path_(std::move(path)) {
  std::lock_guard<std::mutex> lock(mutex);
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path_);
  file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%n] [%l] %v");
  // The file first: once a line is on the console, it is already in train.log.
  auto& sinks = shared_sinks();
  sinks.insert(sinks.begin(), file);
  file_sinks()[path_] = file;
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& existing) {
    existing->sinks().insert(existing->sinks().begin(), file);
  });
}

FileLog::~FileLog() {
  if (!path_.empty()) stop_log_to_file(path_);
}

void stop_log_to_file(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex);
  auto found = file_sinks().find(path);
  if (found == file_sinks().end()) return;
  const spdlog::sink_ptr file = found->second;
  file_sinks().erase(found);
  file->flush();
  auto& sinks = shared_sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(), file), sinks.end());
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& existing) {
    auto& own = existing->sinks();
    own.erase(std::remove(own.begin(), own.end(), file), own.end());
  });
}

}  // namespace bulkhead
