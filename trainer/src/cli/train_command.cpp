// bulkhead train — reads train.json, applies command-line overrides, checks
// everything, then runs the Trainer. Ctrl-C, SIGTERM and SIGHUP save an "interrupted" checkpoint.
// With --nproc N (or --nnodes M) it is the launcher of a data-parallel run instead: it checks the
// config, claims the run folder and starts the ranks, each a `bulkhead train --rank R ...`.
#include <csignal>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/stop_signals.hpp"
#include "common/log.hpp"
#include "distributed/launcher.hpp"
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
  // Data parallel: the launcher's options, and (hidden) what it gives each rank.
  int nproc = 1, nnodes = 1, node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::optional<int> rank;
  bulkhead::RankSettings rank_settings;

  bool launches() const { return !rank && (nproc > 1 || nnodes > 1); }
  // What each rank's `bulkhead train` repeats of this command line (the launcher adds the rest).
  std::vector<std::string> for_ranks() const {
    std::vector<std::string> out;
    auto add = [&](const char* flag, const auto& value) {
      if (value) out.insert(out.end(), {flag, fmt::format("{}", *value)});
    };
    if (!config.empty()) out.insert(out.end(), {"--config", fs::absolute(config).string()});
    add("--max-epochs", max_epochs);
    add("--data-root", data_root);
    add("--device", device);
    add("--seed", seed);
    add("--method", method);
    add("--bench-pace-ms", bench_pace_ms);
    if (plugins) {
      out.push_back("--plugins");
      out.insert(out.end(), plugins->begin(), plugins->end());
    }
    if (watch_plugins) out.push_back("--watch-plugins");
    return out;
  }
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

struct ResolvedRun {
  bulkhead::TrainConfig config;
  std::optional<fs::path> resume;
};

ResolvedRun resolve_run(const TrainArgs& args) {
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
  return {std::move(config), resume};
}

bulkhead::RunSummary train(const TrainArgs& args) {
  auto [config, resume] = resolve_run(args);
  bulkhead::StopSignals stop_signals;
  std::optional<bulkhead::RankSettings> rank;
  if (args.rank) rank = args.rank_settings;
  bulkhead::Trainer trainer(config, resume, args.overwrite, rank);
  if (args.watch_plugins) trainer.watch_plugins();
  const auto web = rank ? nullptr : serve_run(args, trainer.run_dir());  // a launcher serves a run of ranks
  return trainer.run();
}

// The launcher: the config is checked and the run folder claimed before any rank starts.
int launch(const TrainArgs& args) {
  if (args.nproc < 1 || args.nnodes < 1 || args.node_rank < 0 || args.node_rank >= args.nnodes)
    throw bulkhead::ConfigError("--nproc and --nnodes must be at least 1, and --node-rank from 0 to --nnodes - 1 (got --nproc " +
                                std::to_string(args.nproc) + " --nnodes " + std::to_string(args.nnodes) + " --node-rank " +
                                std::to_string(args.node_rank) + ")");
  auto [config, resume] = resolve_run(args);
  auto log = bulkhead::logger("launcher");
  if (args.nnodes > 1)
    log->warn("the ranks meet through c10d's store at {}:{}, which has no authentication: anyone who reaches that port "
              "can join or disturb this run. Use --nnodes only on a network you trust (PyTorch's SECURITY.md says the same)",
              args.master_addr, args.master_port);
  bulkhead::RunFolder folder = bulkhead::claim_run_folder(config, resume, args.overwrite);
  std::optional<bulkhead::FileLog> train_log;
  // Should the launch throw, train.log stays open: the error logged then is its last line.
  const bulkhead::FileLog::OpenOnThrow open_on_throw(train_log);
  train_log.emplace((folder.path() / "train.log").string());
  log->info("data parallel: {} rank(s) here{}, run folder {}", args.nproc,
            args.nnodes > 1 ? fmt::format(" on machine {} of {}", args.node_rank, args.nnodes) : "", folder.path().string());
  bulkhead::StopSignals stop_signals;
  const auto web = args.node_rank == 0 ? serve_run(args, folder.path()) : nullptr;
  bulkhead::LaunchOptions options;
  options.nproc = args.nproc;
  options.nnodes = args.nnodes;
  options.node_rank = args.node_rank;
  options.master_addr = args.master_addr;
  options.master_port = args.master_port;
  options.max_rank_restarts = config.max_rank_restarts;
  options.run_dir = folder.path();
  options.resume = resume.value_or(fs::path());
  options.train_args = args.for_ranks();
  const int status = bulkhead::launch_ranks(options);
  train_log.reset();  // before the web view and the signals go, as before
  return status;
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
  cmd->add_option("--nproc", args->nproc,
                  "Data parallel: train with this many processes (ranks) on this machine, one per GPU where there are "
                  "GPUs; batch_size stays the whole batch (docs/training.md, Data parallel)");
  cmd->add_option("--nnodes", args->nnodes, "Data parallel over several machines: how many (each runs this command)");
  cmd->add_option("--node-rank", args->node_rank, "Data parallel over several machines: which one this is, from 0");
  cmd->add_option("--master-addr", args->master_addr, "Data parallel over several machines: the address of machine 0");
  cmd->add_option("--master-port", args->master_port, "Data parallel over several machines: a free port on machine 0");
  // Given by the launcher to each rank: not for users.
  cmd->add_option("--rank", args->rank)->group("");
  cmd->add_option("--world-size", args->rank_settings.world_size)->group("");
  cmd->add_option("--local-rank", args->rank_settings.local_rank)->group("");
  cmd->add_option("--local-world-size", args->rank_settings.local_world_size)->group("");
  cmd->add_option("--rank-store", args->rank_settings.store)->group("");
  cmd->callback([args, plugins, web] {
    // CLI11 leaves the list unset for a bare --plugins: that means no plugins.
    if (plugins->count() > 0 && !args->plugins) args->plugins.emplace();
    args->web = web->count() > 0;
    auto log = bulkhead::logger("trainer");
    if (args->rank) args->rank_settings.rank = *args->rank;
    try {
      if (args->launches()) {
        if (const int status = launch(*args)) throw CLI::RuntimeError(status);
        return;
      }
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
    } catch (const bulkhead::RankLost& e) {
      throw CLI::RuntimeError(bulkhead::kExitRankLost);  // logged by the trainer; the launcher restarts the ranks
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
