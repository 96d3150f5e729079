// bulkhead plugins list | check PLUGIN | restart PLUGIN --run DIR | stop PLUGIN --run DIR
#include <cstdlib>
#include <iomanip>
#include <iostream>

#include "cli/commands.hpp"
#include "supervisor/checker.hpp"
#include "supervisor/manifest.hpp"

namespace bulkhead {
namespace {

int list_plugins(const PluginCatalog& catalog) {
  std::cout << std::left << std::setw(24) << "NAME" << std::setw(10) << "VERSION" << std::setw(8) << "RUNTIME"
            << "DESCRIPTION\n";
  for (const auto& m : catalog.plugins()) {
    std::cout << std::left << std::setw(24) << m.name << std::setw(10) << m.version << std::setw(8) << m.runtime
              << m.description << "\n";
    // What a plugin asks beyond its jail is what a user must decide to grant: never hidden.
    // A method is chosen with train.json's "method" (or --method), never in "plugins": say which it is.
    if (m.provides == "method") std::cout << std::setw(42) << "" << "method: bulkhead study --method " << m.name << "\n";
    if (!m.permissions.empty()) std::cout << std::setw(42) << "" << "permissions: " << m.permissions.describe() << "\n";
  }
  for (const auto& problem : catalog.problems())
    std::cerr << "warning: " << problem.path.string() << ": " << problem.reason << "\n";
  for (const auto& conflict : catalog.conflicts()) std::cerr << "error: " << conflict << "\n";
  return catalog.conflicts().empty() ? 0 : 1;
}

}  // namespace

void add_plugins_command(CLI::App& app) {
  auto* plugins = app.add_subcommand(
      "plugins", "List plugins, check that one conforms to the protocol, or restart or stop one of a running training");
  plugins->require_subcommand(1);
  static std::vector<std::string> extra_dirs;
  plugins->add_option("--plugins-dir", extra_dirs, "More folders of plugins (also $BULKHEAD_PLUGINS_PATH)");

  auto* list = plugins->add_subcommand("list", "Every plugin Bulkhead can see, bundled and yours");
  list->callback([] {
    PluginCatalog catalog(plugin_dirs_from_environment({extra_dirs.begin(), extra_dirs.end()}));
    std::exit(list_plugins(catalog));
  });

  static std::string target;
  auto* check = plugins->add_subcommand("check", "Start a plugin as training would and validate every hook it declares");
  check->add_option("plugin", target, "A plugin name, a plugin folder or a plugin.json")->required();
  check->callback([] {
    PluginCatalog catalog(plugin_dirs_from_environment({extra_dirs.begin(), extra_dirs.end()}));
    bool ok = false;
    try {
      ok = check_plugin(target, catalog, std::cout);
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
    }
    std::cout.flush();
    std::exit(ok ? 0 : 1);
  });

  static std::string plugin_name;
  static std::string run_dir;
  static int wait_s = 60;
  static bool fresh = false;
  auto* restart = plugins->add_subcommand(
      "restart", "Restart one plugin of a running training (say, after fixing its code); training goes on, "
                 "and the plugin carries on from its state");
  restart->add_option("plugin", plugin_name, "The plugin's name, as the run's log and report show it")->required();
  add_run_options(*restart, run_dir, wait_s);
  restart->add_flag("--fresh", fresh, "Start the plugin empty, without the state it had (plugins that keep state)");
  restart->callback([] {
    std::exit(ask_running_trainer(run_dir, run_control::Request(run_control::Action::restart_plugin, plugin_name, !fresh), wait_s));
  });

  auto* stop = plugins->add_subcommand(
      "stop", "Stop one plugin of a running training for the rest of the run, as a quarantine does; "
              "training goes on without it (plugins restart turns it back on)");
  stop->add_option("plugin", plugin_name, "The plugin's name, as the run's log and report show it")->required();
  add_run_options(*stop, run_dir, wait_s);
  stop->callback([] { std::exit(ask_running_trainer(run_dir, run_control::Request(run_control::Action::stop_plugin, plugin_name), wait_s)); });
}

}  // namespace bulkhead
