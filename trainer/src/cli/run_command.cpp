// bulkhead run save|stop --run DIR: steer a running training from outside (run_control.hpp).
#include <cstdlib>
#include <iostream>

#include "cli/commands.hpp"

namespace bulkhead {

void add_run_options(CLI::App& command, std::string& run_dir, int& wait_s) {
  command.add_option("--run", run_dir, "The run folder of the training")->required()->check(CLI::ExistingDirectory);
  command.add_option("--wait", wait_s, "Seconds to wait for the trainer's answer (default 60)");
}

int ask_running_trainer(const std::string& run_dir, const run_control::Request& request, int wait_s) {
  try {
    run_control::post(run_dir, request);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  const auto answer = run_control::await_answer(run_dir, request, std::chrono::seconds(wait_s));
  if (!answer) {
    std::cerr << "no answer within " << wait_s << " s: is the training in " << run_dir
              << " running? The request stays; the trainer takes it at its next step.\n";
    return 1;
  }
  (answer->ok ? std::cout : std::cerr) << answer->message << "\n";
  return answer->ok ? 0 : 1;
}

void add_run_command(CLI::App& app) {
  auto* run = app.add_subcommand("run", "Ask a running training to save a checkpoint now, or to stop");
  run->require_subcommand(1);
  static std::string run_dir;
  static int wait_s = 60;

  auto* save = run->add_subcommand("save", "Save a checkpoint at the next optimizer step (checkpoints/requested-...)");
  add_run_options(*save, run_dir, wait_s);
  save->callback([] { std::exit(ask_running_trainer(run_dir, run_control::Request(run_control::Action::save_checkpoint), wait_s)); });

  auto* stop = run->add_subcommand(
      "stop", "Stop the training at the next optimizer step; it ends like a finished run (final samples and checkpoint)");
  add_run_options(*stop, run_dir, wait_s);
  stop->callback([] { std::exit(ask_running_trainer(run_dir, run_control::Request(run_control::Action::stop_run), wait_s)); });
}

}  // namespace bulkhead
