// commands.hpp — the `bulkhead` subcommands, each registered on the CLI11 app by its own module.
#pragma once

#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "train/run_control.hpp"
#include "web/web_server.hpp"

namespace bulkhead {

void add_train_command(CLI::App& app);    // bulkhead train --config train.json ...
void add_sample_command(CLI::App& app);   // bulkhead sample --checkpoint PATH --prompt TEXT --out FILE.png
void add_plugins_command(CLI::App& app);  // bulkhead plugins list | check PLUGIN | restart|stop PLUGIN --run DIR
void add_run_command(CLI::App& app);      // bulkhead run save|stop --run DIR
void add_serve_command(CLI::App& app);    // bulkhead serve [--runs DIR] [--port P] [--host ADDR]
void add_study_command(CLI::App& app);    // bulkhead study --config train.json [--run-dir DIR] [--resume DIR]
void add_doctor_command(CLI::App& app);   // bulkhead doctor [--jail-user NAME]
void add_host_command(CLI::App& app);     // bulkhead host keys --out STEM | host serve --listen tcp://... --plugin PLUGIN

// --run DIR and --wait S of the commands that ask a running training to act (run_control.hpp).
void add_run_options(CLI::App& command, std::string& run_dir, int& wait_s);
// Posts the request in the run folder and waits up to wait_s for the trainer's answer, which it
// prints; the exit status: 0 done, 1 refused or no answer, 2 a bad run folder or plugin name.
int ask_running_trainer(const std::string& run_dir, const run_control::Request& request, int wait_s);

// "web view: http://127.0.0.1:8585/?token=...", on stdout (not in train.log: the token is the key).
inline void print_web_url(const web::WebServer& server) {
  std::cout << "web view: " << server.url() << "  (open it once: the token then stays in a cookie)" << std::endl;
}

}  // namespace bulkhead
