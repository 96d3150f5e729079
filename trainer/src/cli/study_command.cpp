// bulkhead study — runs a method plugin's study: each trial a fresh training, the best model kept.
#include <filesystem>
#include <optional>
#include <string>

#include "cli/commands.hpp"
#include "cli/stop_signals.hpp"
#include "common/log.hpp"
#include "study/study.hpp"
#include "train/trainer.hpp"

namespace fs = std::filesystem;
using bulkhead::Json;

namespace {

struct StudyArgs {
  std::string config;
  std::optional<std::string> run_dir;
  std::optional<std::string> method;
  std::optional<int> max_epochs;
  std::optional<std::string> device;
  std::string resume;
  bool overwrite = false;
};

bulkhead::StudyRequest request_from(const StudyArgs& args) {
  bulkhead::StudyRequest request;
  if (!args.resume.empty()) {
    request.user = bulkhead::saved_study_config(args.resume);
    request.source = (fs::path(args.resume) / "study.json").string();
    request.resume = true;
  }
  if (!args.config.empty()) {
    Json user = bulkhead::read_config_file(args.config);
    if (request.resume) user["run_dir"] = request.user["run_dir"];
    request.user = user;
    request.source = args.config;
    request.source_dir = fs::absolute(args.config).parent_path();
  }
  if (args.run_dir) request.user["run_dir"] = *args.run_dir;
  if (args.method) request.user["method"] = {{"name", *args.method}};
  if (args.max_epochs) request.user["max_epochs"] = *args.max_epochs;
  if (args.device) request.user["device"] = *args.device;
  request.overwrite = args.overwrite;
  return request;
}

}  // namespace

namespace bulkhead {

// Exit status: 0 with a best model, 1 when every trial failed, 2 for a bad config or method
// (before any training), 128 + the signal after Ctrl-C, SIGTERM or SIGHUP (resume with --resume).
void add_study_command(CLI::App& app) {
  auto args = std::make_shared<StudyArgs>();
  auto* cmd = app.add_subcommand("study", "Run a method plugin's study: its trials, each a training; keep the best model");
  cmd->add_option("--config", args->config, "train.json, with \"method\" (docs/methods.md)")->check(CLI::ExistingFile);
  cmd->add_option("--run-dir", args->run_dir, "The study's folder (trials/NNN, study.json, best/)");
  cmd->add_option("--method", args->method, "The method plugin (replaces the config's method)");
  cmd->add_option("--max-epochs", args->max_epochs, "Override max_epochs (a method's settings may set it again)");
  cmd->add_option("--device", args->device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--resume", args->resume, "Continue the study in this folder; finished trials are not run again")
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--overwrite", args->overwrite, "Delete an earlier study in --run-dir and start afresh");
  cmd->callback([args] {
    auto log = bulkhead::logger("study");
    try {
      StopSignals stop_signals;
      const StudyResult result = run_study(request_from(*args));
      if (result.signal) throw CLI::RuntimeError(128 + result.signal);
      if (!result.best_trial) throw CLI::RuntimeError(1);
    } catch (const ConfigError& e) {
      log->error("{}", e.what());
      throw CLI::RuntimeError(2);
    } catch (const DataError& e) {
      log->error("{}", e.what());
      throw CLI::RuntimeError(2);
    } catch (const CLI::Error&) {
      throw;
    } catch (const std::exception& e) {
      log->error("{}", e.what());
      throw CLI::RuntimeError(1);
    }
  });
}

}  // namespace bulkhead
