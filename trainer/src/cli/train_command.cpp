// bulkhead train — reads train.json, applies command-line overrides, checks
// everything, then runs the Trainer. Ctrl-C, SIGTERM and SIGHUP save an "interrupted" checkpoint.
#include <csignal>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/stop_signals.hpp"
#include "common/log.hpp"
#include "study/study.hpp"
#include "train/trainer.hpp"

namespace fs = std::filesystem;
using bulkhead::Json;

namespace {

struct TrainArgs {
  std::string config;
  std::optional<int> max_epochs;
  std::optional<std::string> data_root;
  std::optional<std::string> run_dir;
  std::optional<std::vector<std::string>> plugins;
  std::optional<std::string> device;
  std::optional<std::uint64_t> seed;
  std::optional<std::string> method;
  std::optional<double> bench_pace_ms;
  std::string resume;
  bool overwrite = false;
  bool watch_plugins = false;
  bool web = false;  // --web [PORT]: serve the run's web view while it trains
  bulkhead::web::WebOptions web_options;
};

void apply_overrides(Json& user, const TrainArgs& args) {
  if (args.max_epochs) user["max_epochs"] = *args.max_epochs;
  if (args.data_root)  // relative to where the command runs, not to the config file
    user["data_root"] = *args.data_root == "builtin:shapes" ? *args.data_root : fs::absolute(*args.data_root).string();
  if (args.run_dir) user["run_dir"] = *args.run_dir;
  if (args.plugins) user["plugins"] = *args.plugins;
  if (args.device) user["device"] = *args.device;
  if (args.seed) user["seed"] = *args.seed;
  if (args.method) user["method"] = {{"name", *args.method}};
  if (args.bench_pace_ms) user["bench_pace_ms"] = *args.bench_pace_ms;
}

// A resumed run keeps its model's shape; a --config given with --resume may change anything else.
void check_same_model(const bulkhead::TrainConfig& config, const Json& saved) {
  for (const char* key : {"model", "resolution", "max_tokens"})
    if (config.json.at(key) != saved.at(key))
      throw bulkhead::ConfigError("--resume: \"" + std::string(key) + "\" is " + config.json.at(key).dump() +
                                  " but the checkpoint was trained with " + saved.at(key).dump());
}

// The run's web view, serving until the run ends (null without --web). One that cannot listen
// (its port taken) is a command-line problem: nothing has been trained yet.
std::unique_ptr<bulkhead::web::WebServer> serve_run(const TrainArgs& args, const fs::path& run_dir) {
  if (!args.web) return nullptr;
  bulkhead::web::WebOptions options = args.web_options;
  options.run = run_dir;
  try {
    auto server = std::make_unique<bulkhead::web::WebServer>(options);
    bulkhead::print_web_url(*server);
    return server;
  } catch (const std::runtime_error& e) {
    throw bulkhead::ConfigError(std::string("--web: ") + e.what());
  }
}

bulkhead::RunSummary train(const TrainArgs& args) {
  Json user = Json::object();
  std::string source = "(defaults)";
  fs::path source_dir;
  std::optional<fs::path> resume;
  std::optional<Json> saved_config;
  if (!args.resume.empty()) {
    try {
      resume = bulkhead::resolve_checkpoint_path(args.resume);
      saved_config = bulkhead::Checkpoint(*resume).info().config;
    } catch (const std::runtime_error& e) {  // a wrong --resume is a command-line error: nothing was trained
      throw bulkhead::ConfigError(std::string("--resume: ") + e.what());
    }
    user = *saved_config;
    source = resume->string();
    user["run_dir"] = resume->parent_path().parent_path().string();  // continue in the same run folder
  }
  if (!args.config.empty()) {
    user = bulkhead::read_config_file(args.config);
    source = args.config;
    source_dir = fs::absolute(args.config).parent_path();
    if (resume && !user.contains("run_dir")) user["run_dir"] = resume->parent_path().parent_path().string();
  }
  apply_overrides(user, args);
  // With a method, a plain training is the study's first trial: its settings and first parameters.
  if (user.contains("method") && !resume) user = bulkhead::first_trial_config({user, source, source_dir});
  else user.erase("method");
  bulkhead::TrainConfig config = bulkhead::resolve_config(user, source, source_dir);
  if (saved_config) check_same_model(config, *saved_config);

  bulkhead::StopSignals stop_signals;
  bulkhead::Trainer trainer(config, resume, args.overwrite);
  if (args.watch_plugins) trainer.watch_plugins();
  const auto web = serve_run(args, trainer.run_dir());
  return trainer.run();
}

}  // namespace

namespace bulkhead {

// Failures are logged, then reported as CLI::RuntimeError(exit code), which CLI11_PARSE
// returns: 2 for a bad config or data, 1 for a failed run, 128 + the signal after Ctrl-C (130),
// SIGTERM (143) or SIGHUP (129), as a shell reports a process that a signal ended.
void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "Train the text-to-image model (defaults: built-in shapes dataset)");
  cmd->add_option("--config", args->config, "train.json (EveryDream2-style keys; see schemas/train.schema.json)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--max-epochs", args->max_epochs, "Override max_epochs");
  cmd->add_option("--data-root", args->data_root, "Override data_root: an image folder, or builtin:shapes");
  cmd->add_option("--run-dir", args->run_dir, "Write the run into exactly this folder");
  auto* plugins = cmd->add_option("--plugins", args->plugins, "Replace the config's plugin list (given no names: none)")
                      ->expected(0, -1);
  cmd->add_option("--device", args->device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--seed", args->seed, "Override seed");
  cmd->add_option("--method", args->method, "Train the first trial of this method plugin (docs/methods.md)");
  cmd->add_option("--resume", args->resume, "Continue from a run folder (its latest checkpoint) or a checkpoint file");
  cmd->add_flag("--overwrite", args->overwrite, "Delete an earlier run found in --run-dir and start afresh");
  cmd->add_option("--bench-pace-ms", args->bench_pace_ms,
                  "Benchmark mode: each step waits this many ms instead of the model's compute (a GPU's pace); "
                  "loader and plugin hooks run as in training (bench_pace_ms in train.json)");
  cmd->add_flag("--watch-plugins", args->watch_plugins,
                "Restart a plugin, with its state, when its files change on disk (edit a plugin while it trains)");
  auto* web = cmd->add_option("--web", args->web_options.port,
                              "Serve the run's live web view while it trains, on this port (default " +
                                  std::to_string(args->web_options.port) + "; 0: any free one); prints its URL (docs/web.md)")
                  ->expected(0, 1);
  cmd->add_option("--web-host", args->web_options.host,
                  "Address the web view listens on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)");
  cmd->callback([args, plugins, web] {
    // CLI11 leaves the list unset for a bare --plugins: that means no plugins.
    if (plugins->count() > 0 && !args->plugins) args->plugins.emplace();
    args->web = web->count() > 0;
    auto log = bulkhead::logger("trainer");
    try {
      auto summary = train(*args);
      if (summary.outcome == bulkhead::RunOutcome::interrupted) throw CLI::RuntimeError(128 + summary.signal);
    } catch (const bulkhead::ConfigError& e) {
      log->error("{}", e.what());
      throw CLI::RuntimeError(2);
    } catch (const bulkhead::DataError& e) {
      log->error("{}", e.what());
      throw CLI::RuntimeError(2);
    } catch (const bulkhead::TrainingAborted& e) {
      log->error("training aborted: {}", e.what());
      throw CLI::RuntimeError(1);
    } catch (const CLI::Error&) {
      throw;
    } catch (const c10::Error& e) {  // its what() carries a C++ stack trace: not for users
      log->error("{}", e.what_without_backtrace());
      throw CLI::RuntimeError(1);
    } catch (const std::exception& e) {
      log->error("{}", e.what());
      throw CLI::RuntimeError(1);
    }
  });
}

}  // namespace bulkhead
