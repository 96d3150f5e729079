// log.hpp — one spdlog logger per component ("trainer", "data", "plugins", "plugin:<name>", ...).
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace bulkhead {

// The component's logger, created on first use with the shared sinks (console, and the run's train.log once set).
std::shared_ptr<spdlog::logger> logger(const std::string& component);

// From now on every logger also writes to this file (the run folder's train.log), instead of the one set before.
void log_to_file(const std::string& path);
// Stops writing to a file log_to_file started (a study's trial is over: the next one has its own).
void stop_log_to_file(const std::string& path);

}  // namespace bulkhead
