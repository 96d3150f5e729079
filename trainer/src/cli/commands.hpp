// commands.hpp — the `bulkhead` subcommands, each registered on the CLI11 app by its own module.
#pragma once

#include <CLI/CLI.hpp>

namespace bulkhead {

void add_train_command(CLI::App& app);    // bulkhead train --config train.json ...
void add_sample_command(CLI::App& app);   // bulkhead sample --checkpoint PATH --prompt TEXT --out FILE.png
void add_plugins_command(CLI::App& app);  // bulkhead plugins list | check PLUGIN | restart PLUGIN --run DIR
void add_study_command(CLI::App& app);    // bulkhead study --config train.json [--run-dir DIR] [--resume DIR]
void add_doctor_command(CLI::App& app);   // bulkhead doctor [--jail-user NAME]
void add_host_command(CLI::App& app);     // bulkhead host keys --out STEM | host serve --listen tcp://... --plugin PLUGIN

}  // namespace bulkhead
