// bulkhead — a LibTorch trainer whose plugins run out of process.
#include <sys/prctl.h>
#include <torch/version.h>

#include <csignal>
#include <iostream>

#include <bulkhead/heap.hpp>

#include "cli/commands.hpp"
#include "supervisor/cgroup_delegation.hpp"
#include "train/config.hpp"

namespace {

// Every command-line mistake exits 2, as the docs (and most Unix tools) say; the commands' own
// outcomes (CLI::RuntimeError: 1, 2, 130...) and --help / --version (0) keep theirs.
int exit_code(CLI::App& app, const CLI::ParseError& error) {
  if (dynamic_cast<const CLI::RuntimeError*>(&error)) return error.get_exit_code();
  return app.exit(error) == 0 ? 0 : 2;
}

// "bulkhead trian": name the command that was probably meant, not "A subcommand is required".
bool unknown_command(const CLI::App& app, int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return false;
  std::vector<std::string> names;
  for (const auto* sub : app.get_subcommands({})) names.push_back(sub->get_name());
  if (std::find(names.begin(), names.end(), argv[1]) != names.end()) return false;
  std::cerr << "bulkhead: unknown command '" << argv[1] << "'" << bulkhead::did_you_mean(argv[1], names)
            << "; the commands are train, sample, plugins, study, doctor, run, serve and host (bulkhead --help)\n";
  return true;
}

// --version works after any command too: `bulkhead train --version`.
void add_version_flags(CLI::App& app, const std::string& version) {
  app.set_version_flag("--version", version);
  for (auto* sub : app.get_subcommands({})) add_version_flags(*sub, version);
}

}  // namespace

int main(int argc, char** argv) {
  // A plugin host that dies mid-send must not take the trainer with it.
  std::signal(SIGPIPE, SIG_IGN);
  // Nothing of the same user may read or write this process's memory through /proc or ptrace
  // (a plugin in the weak jail runs as that user).
  prctl(PR_SET_DUMPABLE, 0);
  bulkhead::keep_large_buffers_in_heap();
  CLI::App app{"Bulkhead: a LibTorch trainer whose plugins run out of process"};
  app.require_subcommand(1);
  bulkhead::add_train_command(app);
  bulkhead::add_sample_command(app);
  bulkhead::add_plugins_command(app);
  bulkhead::add_study_command(app);
  bulkhead::add_doctor_command(app);
  bulkhead::add_run_command(app);
  bulkhead::add_serve_command(app);
  bulkhead::add_host_command(app);
  add_version_flags(app, "bulkhead " BULKHEAD_VERSION " (LibTorch " TORCH_VERSION ")");
  if (unknown_command(app, argc, argv)) return 2;
  // Plugins' cgroups for an ordinary user on cgroup v2: in a scope systemd delegates (docs/sandbox.md).
  if (argc >= 2 && (std::string(argv[1]) == "train" || std::string(argv[1]) == "study"))
    bulkhead::run_in_delegated_scope_if_useful(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return exit_code(app, error);
  }
  return 0;
}
