#include "common/log.hpp"

#include <mutex>
#include <vector>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace bulkhead {
namespace {

std::mutex mutex;

std::vector<spdlog::sink_ptr>& shared_sinks() {
  static std::vector<spdlog::sink_ptr> sinks{std::make_shared<spdlog::sinks::stderr_color_sink_mt>()};
  return sinks;
}

}  // namespace

std::shared_ptr<spdlog::logger> logger(const std::string& component) {
  std::lock_guard<std::mutex> lock(mutex);
  if (auto existing = spdlog::get(component)) return existing;
  auto created = std::make_shared<spdlog::logger>(component, shared_sinks().begin(), shared_sinks().end());
  created->set_pattern("[%H:%M:%S.%e] [%n] [%^%l%$] %v");
  created->set_level(spdlog::get_level());
  spdlog::register_logger(created);
  return created;
}

void log_to_file(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex);
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
  file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%n] [%l] %v");
  shared_sinks().push_back(file);
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& existing) { existing->sinks().push_back(file); });
}

}  // namespace bulkhead
