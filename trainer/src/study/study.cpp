#include "study/study.hpp"

#include <fcntl.h>
#include <stdio.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <unistd.h>

#include <iostream>

#include <fmt/format.h>

#include <bulkhead/wire.hpp>

#include "common/atomic_file.hpp"
#include "common/log.hpp"
#include "supervisor/plugin_runner.hpp"
#include "study/accumulators.hpp"
#include "study/method.hpp"
#include "study/method_plugin.hpp"
#include "study/search.hpp"
#include "train/config.hpp"
#include "train/image_io.hpp"
#include "train/loss_plot.hpp"
#include "train/run_folder.hpp"
#include "train/tensorboard.hpp"
#include "train/trainer.hpp"

namespace bulkhead {
namespace fs = std::filesystem;
namespace {

struct TrialRecord {
  int trial = 0;
  Json params = Json::object();
  std::string status = "running";  // running | ok | failed
  std::optional<double> score;
  Json metrics = Json::object();
  std::string error;
  double seconds = 0;

  Json to_json() const {
    Json json = {{"trial", trial}, {"params", params}, {"status", status}, {"score", score ? Json(*score) : Json(nullptr)},
                 {"metrics", metrics}, {"seconds", seconds}, {"dir", "trials/" + name()}};
    if (!error.empty()) json["error"] = error;
    return json;
  }
  static TrialRecord from_json(const Json& json) {
    TrialRecord r;
    r.trial = json.at("trial");
    r.params = json.at("params");
    r.status = json.at("status");
    if (json.at("score").is_number()) r.score = json["score"].get<double>();
    r.metrics = json.value("metrics", Json::object());
    r.error = json.value("error", "");
    r.seconds = json.value("seconds", 0.0);
    return r;
  }
  std::string name() const { return fmt::format("{:03d}", trial); }
  bool finished() const { return status != "running"; }
};

// Puts dir/best in place of the old one in one step: RENAME_EXCHANGE swaps two names atomically,
// so best/ is always a whole checkpoint, old or new.
void swap_into_place(const fs::path& staged, const fs::path& target) {
  if (!fs::exists(target)) {
    fs::rename(staged, target);
    return;
  }
  if (::renameat2(AT_FDCWD, staged.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) != 0)
    throw IoError(target, "swap in", errno);
  fs::remove_all(staged);  // now the previous best
}

// Ends a trial's train.log when the trial ends, by a return or an exception: its Trainer closes
// it, or, when the Trainer failed to start, left it open for the error (FileLog::OpenOnThrow).
struct TrialLog {
  std::string path;
  ~TrialLog() { stop_log_to_file(path); }
};

bool finite(const Json& value) { return value.is_number() && std::isfinite(value.get<double>()); }

class Study {
 public:
  explicit Study(const StudyRequest& request)
      : request_(request), base_(resolve_config(request.user, request.source, request.source_dir)), log_(logger("study")) {
    if (!request.user.contains("method"))
      throw ConfigError(request.source + ": a study needs a method: \"method\": {\"name\": ...} in train.json, or --method NAME");
    // A start that throws leaves study.log open: the error its caller then logs is the file's last line.
    const FileLog::OpenOnThrow open_on_throw(study_log_);
    claim_folder();
    method_ = std::make_unique<MethodPlugin>(request.user, base_, dir_, request);
    seed_ = spec().seed.value_or(base_.seed);
    max_suggestion_faults_ = request.user["method"].value("max_suggestion_faults", 3);
    if (request.resume) load_record();
    log_->info("study {}: method '{}', {} search, {} trials, main metric {} ({} is better)", dir_.string(), method_->name(),
               spec().algorithm, spec().max_evals, spec().main_metric, spec().higher_is_better ? "higher" : "lower");
    write_record("running");
  }

  StudyResult run() {
    StudyResult result;
    result.dir = dir_;
    for (int n = 0; n < spec().max_evals && !result.signal; ++n) {
      if (find(n) && find(n)->finished()) continue;  // resumed: finished trials are never run again
      result.signal = run_trial(n);
    }
    if (!result.signal) {
      method_->runner().ask("on_study_end", {{"trials", int(trials_.size())},
                                             {"best_trial", best_ ? Json(*best_) : Json(nullptr)},
                                             {"best_score", best_ ? Json(*find(*best_)->score) : Json(nullptr)}});
    }
    method_->runner().shutdown();
    write_record(result.signal ? "interrupted" : "done");
    write_file_atomically(dir_ / "method-report.json", method_->runner().report().dump(2) + "\n");
    for (auto& t : trials_) (t.status == "ok" ? result.trials_ok : result.trials_failed) += t.finished();
    result.best_trial = best_;
    std::cout << summary_table() << std::flush;
    log_->info("study {}: {} ok, {} failed{}; study.json, study.png, tensorboard --logdir {}", dir_.string(), result.trials_ok,
               result.trials_failed, best_ ? fmt::format(", best trial {:03d} in {}", *best_, (dir_ / "best").string()) : ", no best model",
               dir_.string());
    return result;
  }

  // For `bulkhead train`: trial 0's parameters, without running anything.
  Json first_trial() { return trial_config(request_.user, spec().settings, params_for(0)); }

 private:
  const MethodSpec& spec() const { return method_->spec(); }

  void claim_folder() {
    if (base_.run_dir.empty()) {
      folder_.emplace(RunFolder::claim_new(base_.logdir, base_.project_name));
    } else {
      folder_.emplace(RunFolder::claim(base_.run_dir, request_.resume      ? RunFolder::Mode::resume
                                                      : request_.overwrite ? RunFolder::Mode::overwrite
                                                                           : RunFolder::Mode::fresh));
    }
    dir_ = fs::absolute(folder_->path());
    fs::create_directories(dir_ / "trials");
    study_log_.emplace((dir_ / "study.log").string());
    events_ = std::make_unique<EventWriter>(dir_ / "tensorboard");
  }

  void load_record() {
    std::ifstream in(dir_ / "study.json");
    const Json saved = Json::parse(in, nullptr, false);
    if (!saved.is_object() || !saved.contains("trials")) throw ConfigError(dir_.string() + "/study.json: not a study record to resume");
    for (const auto& t : saved["trials"]) trials_.push_back(TrialRecord::from_json(t));
    method_faults_ = saved.value("method_faults", 0);
    suggestion_faults_ = saved.value("suggestion_faults", 0);
    for (const auto& t : trials_) consider_best(t);
    int finished = 0;
    for (const auto& t : trials_) finished += t.finished();
    log_->info("resuming: {} trial(s) finished, {} to run", finished, spec().max_evals - finished);
  }

  TrialRecord* find(int n) {
    for (auto& t : trials_)
      if (t.trial == n) return &t;
    return nullptr;
  }

  // --- choosing parameters ---------------------------------------------------------------------

  Json params_for(int n) {
    if (auto* known = find(n)) return known->params;  // a trial cut short: the same parameters again
    if (spec().algorithm == "grid") return grid_point(spec().search_space, std::size_t(n));
    if (spec().algorithm == "plugin" && suggestion_faults_ < max_suggestion_faults_)
      if (auto suggested = suggestion(n)) return *suggested;
    return random_point(spec().search_space, seed_, std::size_t(n));
  }

  // The plugin's proposal, checked against the search space and train.json; nothing when it failed.
  std::optional<Json> suggestion(int n) {
    Json history = Json::array();
    for (const auto& t : trials_)
      if (t.finished()) history.push_back({{"trial", t.trial}, {"params", t.params}, {"status", t.status},
                                           {"score", t.score ? Json(*t.score) : Json(nullptr)}});
    auto reply = method_->runner().ask("suggest_trial", {{"trial", n}, {"search_space", spec().search_space},
                                                         {"history", history}, {"higher_is_better", spec().higher_is_better}});
    std::string why = !reply            ? method_->runner().last_fault("suggest_trial")
                      : reply->is_null() ? "it answered nil: the plugin does not implement suggest_trial"
                                         : outside_space(spec().search_space, (*reply)["params"]);
    if (why.empty()) {
      try {
        resolve_config(trial_config(request_.user, spec().settings, (*reply)["params"]), request_.source, request_.source_dir);
        return (*reply)["params"];
      } catch (const ConfigError& e) {
        why = e.what();
      }
    }
    ++suggestion_faults_, ++method_faults_;
    log_->warn("method '{}': suggest_trial for trial {:03d} failed ({}): this trial's parameters are drawn at random (seed {}){}",
               method_->name(), n, why, seed_,
               suggestion_faults_ >= max_suggestion_faults_ ? fmt::format("; {} faults: random search from now on", suggestion_faults_) : "");
    return std::nullopt;
  }

  // --- one trial -------------------------------------------------------------------------------

  // Returns the signal that interrupted it, or 0.
  int run_trial(int n) {
    TrialRecord record;
    record.trial = n;
    record.params = params_for(n);
    const bool cut_short = find(n) != nullptr;  // a resumed study's trial that was running
    if (auto* known = find(n)) *known = record;
    else trials_.push_back(record);
    write_record("running");
    method_->runner().notify("on_trial_start", {{"trial", n}, {"params", record.params}});
    log_->info("trial {:03d}/{:03d}: {}", n, spec().max_evals - 1, record.params.dump());

    const auto started = std::chrono::steady_clock::now();
    const fs::path trial_dir = dir_ / "trials" / record.name();
    TrialRun run;
    try {
      run = train_trial(record, trial_dir, cut_short ? latest_checkpoint(trial_dir) : std::nullopt);
    } catch (const std::exception& e) {
      record.status = "failed";
      record.error = e.what();
    }
    record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (run.signal) return run.signal;  // stays "running" in study.json: --resume runs it again
    if (record.status != "failed") score(record, trial_dir, run.samples);
    if (record.status == "failed") log_->warn("trial {:03d} failed: {}", n, record.error);
    else log_->info("trial {:03d}: {} {}", n, spec().main_metric, *record.score);
    *find(n) = record;
    method_->runner().notify("on_trial_end", record.to_json());
    if (consider_best(record)) promote(record, run.checkpoint);
    prune_checkpoints();
    write_record("running");
    write_curves();
    return 0;
  }

  // How a trial's training ended: the signal that cut it short (0: none), its final checkpoint and sample grid.
  struct TrialRun {
    int signal = 0;
    fs::path checkpoint, samples;
  };

  // A cut-short trial's latest checkpoint (Ctrl-C saves one; so may save_every_n_epochs), if any.
  static std::optional<fs::path> latest_checkpoint(const fs::path& trial_dir) {
    if (!fs::is_directory(trial_dir / "checkpoints")) return std::nullopt;
    try {
      return resolve_checkpoint_path(trial_dir);
    } catch (const std::runtime_error&) {  // none, or none readable: the trial starts again
      return std::nullopt;
    }
  }

  // Trains one trial, or continues it from `resume`; a diverged one is stopped at its next step.
  TrialRun train_trial(TrialRecord& record, const fs::path& trial_dir, const std::optional<fs::path>& resume) {
    Json user = trial_config(request_.user, spec().settings, record.params);
    user.erase("method");
    user["run_dir"] = trial_dir.string();
    TrainConfig config = resolve_config(user, request_.source, request_.source_dir);
    std::string diverged;
    RunSummary summary;
    {
      // The trial's train.log takes the trial's lines only, however the trial ends.
      const TrialLog trial_log{(trial_dir / "train.log").string()};
      // A trial cut short goes on from its latest checkpoint, with the same parameters; without
      // one, it starts again from nothing.
      if (resume) log_->info("trial {:03d} goes on from {}", record.trial, resume->string());
      Trainer trainer(config, resume, /*overwrite=*/!resume);
      trainer.set_hook_observer([&diverged](const std::string& hook, const Json& kwargs) -> std::vector<Json> {
        const char* key = hook == "on_step_end" ? "loss" : hook == "on_validation_end" ? "val_loss" : nullptr;
        if (!key || finite(kwargs.at(key)) || !diverged.empty()) return {};
        diverged = fmt::format("diverged: {} is {} at step {}", key, kwargs.at(key).get<double>(), kwargs.at("global_step").get<long>());
        return {{{"action", "stop"}, {"reason", diverged}}};
      });
      summary = trainer.run();
    }
    if (summary.outcome == RunOutcome::interrupted) return {summary.signal, {}, {}};
    if (!diverged.empty()) record.status = "failed", record.error = diverged;
    return {0, summary.last_checkpoint, summary.last_samples};
  }

  // Raw metrics, accumulators, evaluate's extra metrics, and the score: the main metric's last value.
  void score(TrialRecord& record, const fs::path& trial_dir, const fs::path& samples) {
    TrialMetrics metrics = read_trial_metrics(trial_dir / "metrics.jsonl", spec().accumulators);
    for (auto& [name, value] : metrics.values) record.metrics[name] = value;
    write_accumulated(trial_dir, metrics);
    if (!metrics.non_finite.empty()) {
      record.status = "failed", record.error = "diverged: " + metrics.non_finite + " is not finite";
      return;
    }
    evaluate(record, samples);
    if (!record.metrics.contains(spec().main_metric)) {
      record.status = "failed", record.error = "the trial never logged its main metric " + spec().main_metric;
      return;
    }
    record.status = "ok";
    record.score = record.metrics[spec().main_metric].get<double>();
  }

  // The method may judge the trial's samples too: it cannot see the run folder, so the final grid
  // travels in the message (a few hundred KiB at most at the built-in resolutions).
  void evaluate(TrialRecord& record, const fs::path& samples) {
    Json kwargs = {{"trial", record.trial}, {"params", record.params}, {"metrics", record.metrics}};
    if (!samples.empty()) kwargs["samples"] = wire::image_to_json(read_image(samples));
    auto reply = method_->runner().ask("evaluate", kwargs);
    if (!reply || reply->is_null()) return;  // not implemented, or a fault the runner counted and logged
    for (auto& [name, value] : (*reply)["metrics"].items()) {
      if (std::find(spec().metrics.begin(), spec().metrics.end(), name) == spec().metrics.end()) {
        ++method_faults_;
        log_->warn("method '{}': evaluate returned \"{}\", which describe_method's metrics does not list: ignored", method_->name(), name);
        continue;
      }
      record.metrics[name] = value;
    }
  }

  // Every accumulator's curve beside the trial's own, in the trial's TensorBoard run.
  void write_accumulated(const fs::path& trial_dir, const TrialMetrics& metrics) {
    if (metrics.series.empty()) return;
    EventWriter events(trial_dir / "tensorboard");
    for (auto& [name, points] : metrics.series)
      for (auto& [step, value] : points) events.scalar("accumulated/" + name, step, float(value));
  }

  // --- the best model --------------------------------------------------------------------------

  // True when this finished trial beats the best so far; failed trials never do.
  bool consider_best(const TrialRecord& record) {
    if (record.status != "ok" || !record.score) return false;
    if (best_) {
      const double best = *find(*best_)->score;
      if (spec().higher_is_better ? *record.score <= best : *record.score >= best) return false;
    }
    best_ = record.trial;
    return true;
  }

  // best/ becomes a run folder of its own (checkpoints/, config.json, trial.json) that
  // `bulkhead sample --checkpoint` and `bulkhead train --resume ... --run-dir NEW` take.
  void promote(const TrialRecord& record, const fs::path& checkpoint) {
    const fs::path staged = dir_ / ".best.tmp";
    fs::remove_all(staged);
    fs::create_directories(staged / "checkpoints");
    std::error_code linked;
    fs::create_hard_link(checkpoint, staged / "checkpoints" / checkpoint.filename(), linked);
    if (linked) fs::copy_file(checkpoint, staged / "checkpoints" / checkpoint.filename());
    write_file_atomically(staged / "checkpoints" / "latest.txt", checkpoint.filename().string() + "\n");
    fs::copy_file(dir_ / "trials" / record.name() / "config.json", staged / "config.json");
    write_file_atomically(staged / "trial.json", record.to_json().dump(2) + "\n");
    swap_into_place(staged, dir_ / "best");
    log_->info("best so far: trial {:03d} ({} {}), in {}", record.trial, spec().main_metric, *record.score, (dir_ / "best").string());
  }

  // keep "best": once best/ holds its own copy, the trials' checkpoints go (each is a whole model).
  void prune_checkpoints() {
    if (spec().keep != "best") return;
    for (const auto& t : trials_) {
      if (!t.finished()) continue;
      const fs::path folder = dir_ / "trials" / t.name() / "checkpoints";
      if (!fs::is_directory(folder)) continue;
      for (auto& entry : fs::directory_iterator(folder))
        if (entry.path().extension() == ".pt" || entry.path().filename() == "latest.txt") fs::remove(entry.path());
    }
  }

  // --- what a person reads ---------------------------------------------------------------------

  void write_record(const std::string& status) {
    Json trials = Json::array();
    for (const auto& t : trials_) trials.push_back(t.to_json());
    Json record = {{"status", status},
                   {"method", method_->name()},
                   {"spec", spec().to_json()},
                   {"seed", seed_},
                   {"config", request_.user},
                   {"trials", trials},
                   {"best_trial", best_ ? Json(*best_) : Json(nullptr)},
                   {"best_score", best_ ? Json(*find(*best_)->score) : Json(nullptr)},
                   {"method_faults", method_faults_},
                   {"suggestion_faults", suggestion_faults_}};
    write_file_atomically(dir_ / "study.json", record.dump(2) + "\n");
  }

  void write_curves() {
    std::vector<std::pair<double, double>> scores;
    std::vector<double> failed;
    for (const auto& t : trials_) {
      if (t.status == "ok") {
        scores.emplace_back(t.trial, *t.score);
        events_->scalar("study/" + spec().main_metric, t.trial, float(*t.score));
      } else if (t.status == "failed") {
        failed.push_back(t.trial);
      }
    }
    write_points_plot(dir_ / "study.png", scores, failed,
                      fmt::format("{} per trial ({} is better; red: failed)", spec().main_metric,
                                  spec().higher_is_better ? "higher" : "lower"));
  }

  std::string summary_table() const {
    std::ostringstream out;
    out << "\n" << std::left << std::setw(7) << "trial" << std::setw(48) << "parameters" << std::setw(14) << spec().main_metric
        << std::setw(9) << "status" << "time\n";
    for (const auto& t : trials_) {
      std::string params = t.params.dump();
      if (params.size() > 46) params = params.substr(0, 43) + "...";
      out << std::left << std::setw(7) << (t.name() + (best_ && *best_ == t.trial ? "*" : "")) << std::setw(48) << params
          << std::setw(14) << (t.score ? fmt::format("{:.6g}", *t.score) : "-") << std::setw(9) << t.status
          << fmt::format("{:.1f} s", t.seconds) << (t.error.empty() ? "" : "  (" + t.error + ")") << "\n";
    }
    out << (best_ ? fmt::format("* best: trial {:03d}, in {}\n", *best_, (dir_ / "best").string())
                  : std::string("no trial succeeded: no best model\n"));
    if (method_faults_) out << "method faults: " << method_faults_ << " (see study.log)\n";
    return out.str();
  }

  StudyRequest request_;
  TrainConfig base_;
  std::shared_ptr<spdlog::logger> log_;
  std::optional<RunFolder> folder_;
  fs::path dir_;
  std::unique_ptr<EventWriter> events_;
  std::unique_ptr<MethodPlugin> method_;
  std::uint64_t seed_ = 0;
  int max_suggestion_faults_ = 3;
  std::vector<TrialRecord> trials_;
  std::optional<int> best_;
  int method_faults_ = 0, suggestion_faults_ = 0;
  std::optional<FileLog> study_log_;  // last: closed first, as the study goes
};

}  // namespace

StudyResult run_study(const StudyRequest& request) { return Study(request).run(); }

Json first_trial_config(const StudyRequest& request) {
  // No study folder: the method is asked for its recipe in a scratch folder, then the run is an ordinary one.
  StudyRequest probe = request;
  const fs::path scratch = fs::temp_directory_path() / fmt::format("bulkhead-method-{}", ::getpid());
  probe.user["run_dir"] = scratch.string();
  probe.resume = false;
  probe.overwrite = true;
  Json user;
  {
    Study study(probe);
    user = study.first_trial();
  }
  fs::remove_all(scratch);
  user.erase("method");
  if (request.user.contains("run_dir")) user["run_dir"] = request.user["run_dir"];
  else user.erase("run_dir");
  return user;
}

Json saved_study_config(const fs::path& dir) {
  std::ifstream in(dir / "study.json");
  const Json saved = Json::parse(in, nullptr, false);
  if (!saved.is_object() || !saved.contains("config"))
    throw ConfigError("--resume " + dir.string() + ": no study.json with the study's config there");
  Json user = saved["config"];
  user["run_dir"] = dir.string();
  return user;
}

}  // namespace bulkhead
