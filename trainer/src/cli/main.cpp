// bulkhead — a LibTorch trainer whose plugins run out of process.
#include <sys/prctl.h>

#include <csignal>
#include <iostream>

#include "cli/commands.hpp"

int main(int argc, char** argv) {
  // A plugin host that dies mid-send must not take the trainer with it.
  std::signal(SIGPIPE, SIG_IGN);
  // Nothing of the same user may read or write this process's memory through /proc or ptrace
  // (a plugin in the weak jail runs as that user).
  prctl(PR_SET_DUMPABLE, 0);
  CLI::App app{"Bulkhead: a LibTorch trainer whose plugins run out of process"};
  app.require_subcommand(1);
  bulkhead::add_train_command(app);
  bulkhead::add_sample_command(app);
  bulkhead::add_plugins_command(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
