#include "web/run_files.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>

#include "train/run_folder.hpp"

namespace bulkhead::web {
namespace fs = std::filesystem;
namespace {

// How deep under the root run and study folders are looked for (runs/group/name is depth 2).
constexpr int kMaxDepth = 4;
// A run's own folders, never runs of their own: not walked into.
const char* const kRunSubfolders[] = {"samples", "checkpoints", "tensorboard", "plugin-scratch", "control", "best", "trials"};

Json read_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return nullptr;
  return Json::parse(in, nullptr, /*allow_exceptions=*/false);
}

bool is_run(const fs::path& dir) {
  std::error_code error;
  return fs::is_regular_file(dir / "config.json", error);
}

bool is_study_folder(const fs::path& dir) {
  std::error_code error;
  return fs::is_regular_file(dir / "study.json", error);
}

// "final-ep0060-gs000840.pt" in checkpoints/latest.txt: how the run ended, when no trainer holds it.
std::string ended_as(const fs::path& dir) {
  std::ifstream in(dir / "checkpoints" / "latest.txt");
  std::string latest;
  std::getline(in, latest);
  latest = fs::path(latest).filename().string();
  if (latest.rfind("final-", 0) == 0) return "finished";
  if (latest.rfind("interrupted-", 0) == 0) return "interrupted";
  if (latest.rfind("errored-", 0) == 0) return "failed";
  return "ended";  // killed, or never got as far as a checkpoint
}

// The newest step record (one with a loss), read from the file's end.
Json last_step_record(const fs::path& metrics) {
  std::ifstream in(metrics, std::ios::binary | std::ios::ate);
  if (!in) return nullptr;
  const std::streamoff size = in.tellg();
  const std::streamoff start = std::max<std::streamoff>(0, size - 8192);  // records are ~200 bytes
  in.seekg(start);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  // The first line read from mid-file may be a record's tail.
  for (auto line = lines.rbegin(); line != lines.rend() && !(start > 0 && line == std::prev(lines.rend())); ++line) {
    const Json record = Json::parse(*line, nullptr, /*allow_exceptions=*/false);
    if (record.is_object() && record.contains("loss")) return record;
  }
  return nullptr;
}

// "epoch-0020-gs000280-p01.png": the kind and number, the step, and the prompt's row (none for a grid).
struct SampleName {
  std::string stem;  // "epoch-0020-gs000280"
  std::int64_t step = 0;
  std::optional<int> row;
};

std::optional<SampleName> parse_sample_name(const std::string& name) {
  static const std::regex pattern(R"(^((?:[a-z]+-)?(?:\d+-)?gs(\d+))(?:-p(\d+))?\.png$)");
  std::smatch match;
  if (!std::regex_match(name, match, pattern)) return std::nullopt;
  SampleName sample{match[1], std::stoll(match[2]), std::nullopt};
  if (match[3].matched) sample.row = std::stoi(match[3]);
  return sample;
}

std::vector<std::string> lines_of(const fs::path& file) {
  std::vector<std::string> lines;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

RunFiles::RunFiles(fs::path root, std::optional<fs::path> only) : root_(std::move(root)), only_(std::move(only)) {
  // `bulkhead serve --runs runs/x` on one run or study: that folder alone, as for a trainer's.
  if (!only_ && (is_run(root_) || is_study_folder(root_))) only_ = root_;
  if (only_) {
    only_ = fs::absolute(*only_).lexically_normal();
    if (only_->filename().empty()) only_ = only_->parent_path();  // "runs/x/" names x
    root_ = only_->parent_path();
  }
}

std::string RunFiles::id_of(const fs::path& dir) const { return dir.lexically_relative(root_).generic_string(); }

bool RunFiles::is_study(const fs::path& dir) const { return is_study_folder(dir); }

Json RunFiles::list() const {
  Json runs = Json::array(), studies = Json::array();
  std::vector<fs::path> found;
  if (only_) found.push_back(*only_);
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(root_, fs::directory_options::skip_permission_denied, error);
       !only_ && !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (!it->is_directory(error)) continue;
    const auto& path = it->path();
    const bool own_folder = std::any_of(std::begin(kRunSubfolders), std::end(kRunSubfolders),
                                        [&](const char* name) { return path.filename() == name; });
    // A run's own folders hold no runs, and a study's trials are shown with the study.
    if (own_folder || is_run(path) || is_study_folder(path) || it.depth() + 1 >= kMaxDepth) it.disable_recursion_pending();
    if (!own_folder && (is_run(path) || is_study_folder(path))) found.push_back(path);
  }
  for (const auto& dir : found) {
    if (is_study_folder(dir)) studies.push_back(study_summary(dir));
    else runs.push_back(run(dir));
  }
  // Default run folder names end in their start time: newest first by name is newest first.
  auto newest_first = [](const Json& a, const Json& b) { return a["name"].get<std::string>() > b["name"].get<std::string>(); };
  std::sort(runs.begin(), runs.end(), newest_first);
  std::sort(studies.begin(), studies.end(), newest_first);
  for (auto& summary : runs) summary.erase("config");  // a list stays small; run() has it whole
  return {{"root", root_.string()}, {"runs", runs}, {"studies", studies}};
}

std::optional<fs::path> RunFiles::find(const std::string& id) const {
  static const std::regex component(R"(^[A-Za-z0-9_][A-Za-z0-9_.+-]*$)");
  if (id.empty() || id.size() > 512) return std::nullopt;
  const fs::path relative(id);
  for (const auto& part : relative)
    if (!std::regex_match(part.string(), component)) return std::nullopt;  // no "..", no absolute path
  const fs::path dir = root_ / relative;
  // The one run or study served, or a study's trial, and none of its neighbours in the parent folder.
  if (only_ && dir != *only_ && dir.lexically_relative(*only_).string().rfind("..", 0) == 0) return std::nullopt;
  std::error_code error;
  const fs::path real = fs::canonical(dir, error), real_root = fs::canonical(root_, error);
  if (error || real.lexically_relative(real_root).string().rfind("..", 0) == 0) return std::nullopt;  // a link out
  if (!is_run(dir) && !is_study_folder(dir)) return std::nullopt;
  return dir;
}

Json RunFiles::run(const fs::path& dir) const {
  const bool live = RunFolder::in_use(dir);
  const Json config = read_json(dir / "config.json");
  const Json report = read_json(dir / "plugin-report.live.json");
  std::ifstream latest(dir / "checkpoints" / "latest.txt");
  std::string last_checkpoint;
  std::getline(latest, last_checkpoint);
  return {{"id", id_of(dir)},
          {"name", dir.filename().string()},
          {"live", live},
          {"status", live ? "training" : ended_as(dir)},
          {"config", config},
          {"max_epochs", config.is_object() ? config.value("max_epochs", Json(nullptr)) : Json(nullptr)},
          {"progress", report.is_object() ? report.value("progress", Json(nullptr)) : Json(nullptr)},
          {"last_checkpoint", last_checkpoint.empty() ? Json(nullptr) : Json(fs::path(last_checkpoint).filename().string())},
          {"last", last_step_record(dir / "metrics.jsonl")}};
}

MetricsChunk RunFiles::metrics(const fs::path& dir, std::int64_t since_step, std::uintmax_t offset) const {
  MetricsChunk chunk;
  chunk.next_offset = offset;
  std::ifstream in(dir / "metrics.jsonl", std::ios::binary);
  if (!in) return chunk;
  in.seekg(static_cast<std::streamoff>(offset));
  for (std::string line; std::getline(in, line);) {
    if (in.eof()) break;  // no newline yet: the trainer is writing it, read it next time
    chunk.next_offset += line.size() + 1;
    const Json record = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_object() && record.value("step", std::int64_t{-1}) >= since_step) chunk.records.push_back(record);
  }
  return chunk;
}

Json RunFiles::samples(const fs::path& dir) const {
  std::map<int, Json> rows;  // row -> images
  std::map<int, std::string> prompts;
  Json grids = Json::array();
  std::vector<std::pair<SampleName, std::string>> found;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir / "samples", error))
    if (auto sample = parse_sample_name(entry.path().filename().string())) found.emplace_back(*sample, entry.path().filename().string());
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first.step < b.first.step; });
  for (const auto& [sample, name] : found) {
    if (!sample.row) {
      grids.push_back({{"step", sample.step}, {"name", name}});
      // The grid's .txt lists its rows' prompts: the newest grid names them.
      const auto listed = lines_of(dir / "samples" / (sample.stem + ".txt"));
      for (std::size_t i = 0; i < listed.size(); ++i) prompts[static_cast<int>(i)] = listed[i];
      continue;
    }
    rows[*sample.row].push_back({{"step", sample.step}, {"name", name}});
  }
  Json list = Json::array();
  for (auto& [row, images] : rows)
    list.push_back({{"index", row}, {"prompt", prompts.count(row) ? Json(prompts[row]) : Json(nullptr)}, {"images", images}});
  return {{"prompts", list}, {"grids", grids}};
}

std::optional<fs::path> RunFiles::sample_file(const fs::path& dir, const std::string& name) const {
  if (!parse_sample_name(name)) return std::nullopt;  // a plain name: no folder, no ".."
  const fs::path file = dir / "samples" / name;
  std::error_code error;
  if (!fs::is_regular_file(file, error)) return std::nullopt;
  return file;
}

Json RunFiles::plugins(const fs::path& dir) const {
  for (const char* name : {"plugin-report.live.json", "plugin-report.json"}) {
    Json report = read_json(dir / name);
    if (report.is_object() && report.contains("plugins")) return report;
  }
  return {{"plugins", Json::array()}};
}

Json RunFiles::study(const fs::path& dir) const {
  Json record = read_json(dir / "study.json");
  if (!record.is_object()) return nullptr;
  for (auto& trial : record["trials"])
    if (trial.contains("dir")) trial["run"] = id_of(dir / trial["dir"].get<std::string>());
  record["id"] = id_of(dir);
  record["name"] = dir.filename().string();
  return record;
}

Json RunFiles::study_summary(const fs::path& dir) const {
  const Json record = study(dir);
  if (record.is_null()) return {{"id", id_of(dir)}, {"name", dir.filename().string()}, {"status", "unreadable"}};
  const Json spec = record.value("spec", Json::object());
  return {{"id", record["id"]},
          {"name", record["name"]},
          {"status", record.value("status", "")},
          {"method", record.value("method", "")},
          {"main_metric", spec.value("main_metric", "")},
          {"trials", record["trials"].size()},
          {"best_trial", record.value("best_trial", Json(nullptr))},
          {"best_score", record.value("best_score", Json(nullptr))}};
}

}  // namespace bulkhead::web
