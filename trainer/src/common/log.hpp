// log.hpp — one spdlog logger per component ("trainer", "data", "plugins", "plugin:<name>", ...).
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <string>

#include <spdlog/spdlog.h>

namespace bulkhead {

// The component's logger, created on first use with the shared sinks (console, and the run's train.log once set).
std::shared_ptr<spdlog::logger> logger(const std::string& component);

// Every logger writes to this file (a run folder's train.log, a study's study.log) while the
// FileLog lives: the file's sink is added, first of all sinks, on construction, and taken out,
// flushed, on destruction (a study's trial is over: the next one has its own).
class FileLog {
 public:
  explicit FileLog(std::string path);
  ~FileLog();
  FileLog(const FileLog&) = delete;
  FileLog& operator=(const FileLog&) = delete;

  const std::string& path() const { return path_; }

  // Held over a start (a constructor) that makes `log`: should the start throw, the file is left
  // open, so that the error its caller then logs is the file's last line. stop_log_to_file closes it.
  class OpenOnThrow {
   public:
    explicit OpenOnThrow(std::optional<FileLog>& log) : log_(log), exceptions_(std::uncaught_exceptions()) {}
    ~OpenOnThrow() {
      if (std::uncaught_exceptions() > exceptions_ && log_) log_->path_.clear();
    }
    OpenOnThrow(const OpenOnThrow&) = delete;
    OpenOnThrow& operator=(const OpenOnThrow&) = delete;

   private:
    std::optional<FileLog>& log_;
    int exceptions_;
  };

 private:
  std::string path_;  // empty once left open
};

// Closes a file a failed start left open (FileLog::OpenOnThrow); nothing when it is not open.
void stop_log_to_file(const std::string& path);

}  // namespace bulkhead
