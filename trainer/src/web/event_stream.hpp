// event_stream.hpp — one page's live updates of a run or a study, as Server-Sent Events.
//
//   auto stream = std::make_shared<EventStream>(files, dir, /*since_step=*/0);
//   while (stream->pump(sink)) sleep(...);     // what is new since the last pump; false: the page has gone
//
// Events (each `data:` is one line of JSON):
//   run      the run's summary (run_files.hpp's run(), without its config): status, progress, last step
//   metrics  an array of new metrics.jsonl records
//   samples  the whole sample listing, when samples/ changed
//   plugins  the plugins' report, when the trainer rewrote it
//   study    the study's record (study.json), when it changed
// The first pump sends each; later ones only what changed, by looking at the files (the trainer
// knows nothing of the web view).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include <httplib.h>

#include "web/run_files.hpp"

namespace bulkhead::web {

class EventStream {
 public:
  enum class Kind { run, study };

  EventStream(const RunFiles& files, std::filesystem::path dir, Kind kind, std::int64_t since_step = 0);

  // Writes what changed since the last pump into sink; false when a write failed (the page has gone).
  bool pump(httplib::DataSink& sink);

 private:
  bool send(httplib::DataSink& sink, const std::string& event, const Json& data);
  // A file's (or folder's) size and modification time, to notice that it changed; "" when it is missing.
  static std::string stamp(const std::filesystem::path& path);

  const RunFiles& files_;
  std::filesystem::path dir_;
  Kind kind_;
  std::int64_t since_step_;
  std::uintmax_t metrics_offset_ = 0;
  std::string run_seen_, samples_seen_, plugins_seen_, study_seen_;
  std::chrono::steady_clock::time_point last_write_ = std::chrono::steady_clock::now();
};

}  // namespace bulkhead::web
