// bulkhead doctor — which walls of the plugin jail hold on this machine, for this user.
#include <iostream>

#include "cli/commands.hpp"
#include "supervisor/jail_layers.hpp"

namespace bulkhead {

void add_doctor_command(CLI::App& app) {
  auto* doctor = app.add_subcommand("doctor", "Say which walls of the plugin jail hold here, for this user (docs/sandbox.md)");
  static JailSettings jail;
  doctor->add_option("--jail-user", jail.user, "Who plugins run as when the trainer is root (train.json's jail.user)")
      ->capture_default_str();
  doctor->callback([] {
    const auto layers = jail_layers(jail);
    bool jailed = true, limited = false;
    for (const auto& layer : layers) {
      std::cout << (layer.active ? "  on   " : "  OFF  ") << layer.name << ": " << layer.state << "\n";
      if (layer.name == "full jail") jailed = layer.active;
      if (layer.name == "cgroups" || layer.name == "accounting floor") limited = limited || layer.active;
    }
    // Plugins start only in a full jail whose whole-tree limits some layer enforces (fail closed).
    std::cout << (jailed && limited ? "plugins run fully jailed here, their limits held for each whole process tree\n"
                                    : "plugins do NOT start here in the full jail (see above); train.json's \"jail\": {\"mode\": \"weak\"} runs them anyway\n");
    if (!(jailed && limited)) throw CLI::RuntimeError(1);
  });
}

}  // namespace bulkhead
