// study.hpp — a study: a method plugin's trials, each a fresh training, and the best model kept.
//
//   StudyRequest request{user_json, "train.json", config_dir};   // user_json holds "method"
//   StudyResult result = run_study(request);   // throws ConfigError before any training when the method is wrong
//
// The study folder holds trials/NNN/ (a run folder each), study.json (rewritten atomically after
// every trial), best/ (the best trial's checkpoint and config: `bulkhead sample --checkpoint DIR/best`),
// study.png (the main metric per trial), tensorboard/ (the study's curve) and study.log. The method
// plugin lives for the whole study; the trials' own plugins start afresh with each trial.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace bulkhead {

using Json = nlohmann::json;

struct StudyRequest {
  Json user = Json::object();          // train.json with the command line's overrides; holds "method"
  std::string source = "(defaults)";   // names the config in messages
  std::filesystem::path source_dir;    // train.json's folder
  bool resume = false;                 // continue the study in run_dir: finished trials are not run again
  bool overwrite = false;              // delete an earlier study in run_dir first
};

struct StudyResult {
  std::filesystem::path dir;
  int trials_ok = 0, trials_failed = 0;
  std::optional<int> best_trial;
  int signal = 0;  // the signal that interrupted the study, 0 when it ran to its end
};

StudyResult run_study(const StudyRequest& request);

// `bulkhead train` with a method runs its first trial only: the train.json of that trial (the
// method's settings and its first parameters laid over the config, "method" taken out).
Json first_trial_config(const StudyRequest& request);

// A study folder's base train.json, for `bulkhead study --resume DIR` without --config.
Json saved_study_config(const std::filesystem::path& dir);

}  // namespace bulkhead
