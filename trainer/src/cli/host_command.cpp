// bulkhead host keys --out STEM | host serve --listen tcp://ADDR:PORT --plugin PLUGIN --key FILE --allow FILE...
#include <csignal>
#include <cstdlib>
#include <iostream>

#include "cli/commands.hpp"
#include "common/log.hpp"
#include "supervisor/host_process.hpp"
#include "remote/host_server.hpp"
#include "remote/keys.hpp"

namespace bulkhead {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

struct ServeOptions {
  std::string listen, plugin, key, jail = "full", jail_user = "nobody", python, grant = "{}";
  std::vector<std::string> allow, plugin_dirs;
  bool insecure = false;
  int max_hosts = 4;
};

HostServerSettings settings_from(const ServeOptions& o) {
  HostServerSettings s;
  s.listen = o.listen;
  s.plugin = PluginCatalog(plugin_dirs_from_environment({o.plugin_dirs.begin(), o.plugin_dirs.end()})).resolve(o.plugin);
  if (s.plugin.provides == "method") throw std::runtime_error("plugin '" + s.plugin.name + "' is a method: a method runs on the trainer's machine");
  if (o.insecure && (!o.key.empty() || !o.allow.empty()))
    throw std::runtime_error("--insecure serves plain TCP without keys: drop --key and --allow, or --insecure");
  if (!o.insecure) {
    if (o.key.empty()) throw std::runtime_error("--key is required (this server's .key file: make one with 'bulkhead host keys --out host'), or --insecure for plain TCP");
    if (o.allow.empty()) throw std::runtime_error("no trainer is allowed: name each trainer's .pub file with --allow (or --insecure for plain TCP)");
    s.secret_key = keys::read_key_pair(o.key).secret_key;
    s.allowed_clients = keys::read_public_keys(o.allow);
  }
  s.jail.mode = o.jail == "weak" ? JailSettings::Mode::weak : JailSettings::Mode::full;
  s.jail.user = o.jail_user;
  if (s.jail.mode == JailSettings::Mode::full) {
    const std::string why = HostProcess::full_jail_unavailable(s.jail);
    if (!why.empty()) throw std::runtime_error(why + " (here: bulkhead host serve --jail weak)");
  }
  Json grant;
  try {
    grant = Json::parse(o.grant);
  } catch (const Json::parse_error& e) {
    throw std::runtime_error("--grant is not JSON: " + std::string(e.what()));
  }
  s.granted = Permissions::from_json(grant, std::filesystem::current_path());
  // model_access is the trainer's to grant: it decides what of the model crosses.
  Permissions asked = s.plugin.permissions;
  asked.model_access.clear();
  if (const auto problem = ungranted(s.plugin.name, s.plugin.path, asked, s.granted, "--grant"); !problem.empty())
    throw std::runtime_error(problem);
  s.python = o.python;
  s.max_hosts = o.max_hosts;
  return s;
}

int serve(const ServeOptions& options) {
  auto log = logger("host-server");
  std::unique_ptr<HostServer> server;
  try {
    HostServerSettings settings = settings_from(options);
    const Manifest plugin = settings.plugin;
    const std::string public_key = options.insecure ? "" : keys::read_key_pair(options.key).public_key;
    const auto allowed = settings.allowed_clients.size();
    server = std::make_unique<HostServer>(std::move(settings));
    std::cout << "serving " << plugin.name << " " << plugin.version << " (" << plugin.runtime << ") on " << server->endpoint() << "\n";
    if (options.insecure)
      log->warn("PLAIN TCP (--insecure): no keys, no encryption; anyone who reaches {} can use the plugin, and anyone between "
                "it and a trainer can read and change what passes",
                server->endpoint());
    else
      std::cout << "server key " << public_key << " (the trainer pins it: \"server_key\"); " << allowed << " trainer key"
                << (allowed == 1 ? "" : "s") << " allowed\n";
    std::cout.flush();
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) std::signal(signal, on_stop);
  server->serve([] { return g_stop != 0; });
  log->info("stopping: ending every host");
  return 0;
}

}  // namespace

void add_host_command(CLI::App& app) {
  auto* host = app.add_subcommand("host", "Serve a plugin's hosts to trainers on other machines, and make their keys");
  host->require_subcommand(1);

  static std::string out;
  auto* keys_command = host->add_subcommand("keys", "Make a CURVE key pair: STEM.key (secret) and STEM.pub (to hand out)");
  keys_command->add_option("--out", out, "Where, without the extension: --out trainer writes trainer.key and trainer.pub")->required();
  keys_command->callback([] {
    try {
      const auto [key, pub] = keys::write_key_pair(keys::make_key_pair(), out);
      std::cout << "wrote " << key.string() << " (secret: keep it) and " << pub.string() << " (hand it to the other side)\n";
      std::exit(0);
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      std::exit(1);
    }
  });

  static ServeOptions options;
  auto* serve_command = host->add_subcommand("serve", "Run one plugin's hosts, jailed, for trainers that connect (docs/protocol.md, Remote hosts)");
  serve_command->add_option("--listen", options.listen, "tcp://ADDR:PORT (PORT * for any free one)")->required();
  serve_command->add_option("--plugin", options.plugin, "A plugin name, a plugin folder or a plugin.json")->required();
  serve_command->add_option("--key", options.key, "This server's key pair (bulkhead host keys)");
  serve_command->add_option("--allow", options.allow, "A trainer's .pub file (or key) it admits; repeat for more");
  serve_command->add_flag("--insecure", options.insecure, "Plain TCP: no keys, no encryption (a network you trust)");
  serve_command->add_option("--jail", options.jail, "full (default) or weak, as train.json's jail mode")->check(CLI::IsMember({"full", "weak"}));
  serve_command->add_option("--jail-user", options.jail_user, "Who plugins run as when the server is root (default nobody)");
  serve_command->add_option("--python", options.python, "The interpreter for Python plugins");
  serve_command->add_option("--grant", options.grant, "Permissions granted to the plugin here, as train.json's \"grant\" (JSON)");
  serve_command->add_option("--max-hosts", options.max_hosts, "Hosts at once, all trainers together (default 4)")->check(CLI::Range(1, 64));
  serve_command->add_option("--plugins-dir", options.plugin_dirs, "More folders of plugins (also $BULKHEAD_PLUGINS_PATH)");
  serve_command->callback([] { std::exit(serve(options)); });
}

}  // namespace bulkhead
