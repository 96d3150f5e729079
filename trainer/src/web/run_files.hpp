// run_files.hpp — what the web view shows, read from run and study folders as the trainer left
// them (docs/training.md, "Run folder"; docs/methods.md, "The study folder"). Nothing here writes.
//
//   web::RunFiles files("runs");                        // every run and study under runs/
//   Json all = files.list();                            // {"runs": [...], "studies": [...]}
//   if (auto dir = files.find("shapes-demo-20261201-135201")) files.metrics(*dir, 100);
//
// A folder's id is its path under the root ("study/trials/000"); find() takes only ids of real run
// or study folders inside the root, so no request can name a file elsewhere.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace bulkhead::web {

using Json = nlohmann::json;

// metrics.jsonl read from a byte offset: the complete lines after it, and where the next read starts.
struct MetricsChunk {
  Json records = Json::array();
  std::uintmax_t next_offset = 0;
};

class RunFiles {
 public:
  // Every run and study under root; with `only`, that one run folder alone (bulkhead train --web).
  explicit RunFiles(std::filesystem::path root, std::optional<std::filesystem::path> only = std::nullopt);

  const std::filesystem::path& root() const { return root_; }
  // {"root", "runs": [run summary...], "studies": [study summary...]}, newest first.
  Json list() const;
  // The run or study folder of an id; nothing when the id names none inside the root.
  std::optional<std::filesystem::path> find(const std::string& id) const;
  bool is_study(const std::filesystem::path& dir) const;

  // {"id", "name", "live", "status", "config", "progress", "last_checkpoint", "last"}: "live" while a
  // trainer holds the folder; "progress" from the live report; "last" the newest step record.
  Json run(const std::filesystem::path& dir) const;
  // Records whose step is at least since_step, from offset on.
  MetricsChunk metrics(const std::filesystem::path& dir, std::int64_t since_step, std::uintmax_t offset = 0) const;
  // {"prompts": [{"index", "prompt", "images": [{"step", "name"}]}], "grids": [{"step", "name"}]}, by step.
  Json samples(const std::filesystem::path& dir) const;
  // A sample image's path, when `name` is a PNG in the run's samples/.
  std::optional<std::filesystem::path> sample_file(const std::filesystem::path& dir, const std::string& name) const;
  // The plugins' report: the live one while training (plugin-report.live.json), else the final one;
  // {"plugins": []} when the run has neither.
  Json plugins(const std::filesystem::path& dir) const;
  // study.json, each trial with the id of its run folder ("run"); null when it is unreadable.
  Json study(const std::filesystem::path& dir) const;

 private:
  std::string id_of(const std::filesystem::path& dir) const;
  Json study_summary(const std::filesystem::path& dir) const;

  std::filesystem::path root_;
  std::optional<std::filesystem::path> only_;
};

}  // namespace bulkhead::web
