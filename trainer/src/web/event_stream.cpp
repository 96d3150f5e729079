#include "web/event_stream.hpp"

namespace bulkhead::web {
namespace fs = std::filesystem;
namespace {

// A comment line this often keeps proxies from closing a quiet stream, and finds a page that has gone.
constexpr std::chrono::seconds kKeepAlive{15};

}  // namespace

EventStream::EventStream(const RunFiles& files, fs::path dir, Kind kind, std::int64_t since_step)
    : files_(files), dir_(std::move(dir)), kind_(kind), since_step_(since_step) {}

std::string EventStream::stamp(const fs::path& path) {
  std::error_code error;
  const auto time = fs::last_write_time(path, error).time_since_epoch().count();
  if (error) return "";
  const auto size = fs::is_regular_file(path, error) ? fs::file_size(path, error) : 0;
  return std::to_string(size) + "@" + std::to_string(time);
}

bool EventStream::send(httplib::DataSink& sink, const std::string& event, const Json& data) {
  const std::string text = "event: " + event + "\ndata: " + data.dump() + "\n\n";
  last_write_ = std::chrono::steady_clock::now();
  return sink.write(text.data(), text.size());
}

bool EventStream::pump(httplib::DataSink& sink) {
  if (kind_ == Kind::study) {
    const std::string seen = stamp(dir_ / "study.json");
    if (seen != study_seen_ && !send(sink, "study", files_.study(dir_))) return false;
    study_seen_ = seen;
  } else {
    Json run = files_.run(dir_);
    run.erase("config");
    if (const std::string seen = run.dump(); seen != run_seen_) {
      if (!send(sink, "run", run)) return false;
      run_seen_ = seen;
    }
    MetricsChunk chunk = files_.metrics(dir_, since_step_, metrics_offset_);
    if (!chunk.records.empty() && !send(sink, "metrics", chunk.records)) return false;
    metrics_offset_ = chunk.next_offset;
    // A directory's time changes when a file is added to it or renamed into it.
    if (const std::string seen = stamp(dir_ / "samples"); seen != samples_seen_) {
      if (!send(sink, "samples", files_.samples(dir_))) return false;
      samples_seen_ = seen;
    }
    const std::string seen = stamp(dir_ / "plugin-report.live.json") + stamp(dir_ / "plugin-report.json");
    if (seen != plugins_seen_ && !send(sink, "plugins", files_.plugins(dir_))) return false;
    plugins_seen_ = seen;
  }
  if (std::chrono::steady_clock::now() - last_write_ < kKeepAlive) return true;
  last_write_ = std::chrono::steady_clock::now();
  static const std::string keep_alive = ": keep-alive\n\n";
  return sink.write(keep_alive.data(), keep_alive.size());
}

}  // namespace bulkhead::web
