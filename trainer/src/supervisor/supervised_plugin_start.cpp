// supervised_plugin_start.cpp — a start of the host: its process (here or on another machine), its
// connection, the hello and welcome, the security mechanism tried the other way (protocol 1 or 2),
// and what the hello agreed on.
#include "supervisor/supervised_plugin_parts.hpp"

#include <sys/stat.h>
#include <random>
#include <sstream>
#include <thread>

#include <fmt/ranges.h>

#include "common/log.hpp"
#include "common/paths.hpp"
#include "common/spelling.hpp"
#include "supervisor/handshake.hpp"
#include "remote/keys.hpp"
#include "remote/remote_host.hpp"

namespace bulkhead {
using namespace supervised_parts;

namespace {

constexpr auto kHelloTimeout = std::chrono::seconds(10);

std::string random_token() {
  std::random_device device;
  std::ostringstream token;
  for (int i = 0; i < 4; ++i) token << std::hex << device();
  return token.str();
}

std::vector<std::filesystem::path> search_path(const RunInfo& run) {
  std::vector<std::filesystem::path> path;
  if (!run.config_dir.empty()) path.push_back(run.config_dir);
  path.push_back(std::filesystem::current_path());
  path.push_back(paths::home());
  return path;
}

}  // namespace

void SupervisedPlugin::launch() {
  try {
    start();
  } catch (const LoadFailure&) {
    throw;
  } catch (const std::exception& e) {
    if (aborts_on("(start)")) throw;
    start_failed(e);
  }
}

ConnectionEvents SupervisedPlugin::connection_events(Generation& generation) {
  ConnectionEvents events;
  events.on_log = [this](const Json& params) {
    const std::string level = params.value("level", "info"), message = params.value("message", "");
    auto plugin_log = logger("plugin:" + manifest_.name);
    if (level == "error") {
      plugin_log->error("{}", message);
      std::lock_guard<std::mutex> lock(mutex_);
      last_log_error_ = message;
    } else if (level == "warning") {
      plugin_log->warn("{}", message);
    } else if (level == "debug") {
      plugin_log->debug("{}", message);
    } else {
      plugin_log->info("{}", message);
    }
  };
  events.on_control = [this](const Json& requests) { handle_control(requests); };
  events.on_protocol_error = [this](const std::string& what) { protocol_problem("rejected a message: " + what); };
  // A plain pointer, not a shared one: the I/O thread must never hold the last reference to the
  // generation, or it would destroy its own connection and join itself.
  Generation* raw = &generation;
  events.exited = [raw]() -> std::string {
    PluginHost* process = raw->started_process.load();
    return process && !process->running() ? process->exit_description() : "";
  };
  events.serving = [raw] { return raw->serving(); };
  return events;
}

void SupervisedPlugin::open_local(Generation& generation, const std::string& token, ConnectionEvents events, bool plain) {
  const bool jailed = run_.jail.mode == JailSettings::Mode::full;
  const PluginIdentity identity = jailed ? plugin_identity(run_.jail) : PluginIdentity{};
  const auto socket_dir = host_socket_folder(runtime_dir_, manifest_.name, generation.number, identity);
  const auto scratch = scratch_folder(identity);
  const std::string endpoint = host_endpoint(socket_dir);
  Generation* raw = &generation;
  Admission admission{plain ? token : std::string(), {}, {}};
  if (!plain)
    admission.process_is_host = [raw](long pid) {
      // The host connects after it starts; the pointer is set a moment after it starts.
      for (int tries = 0; tries < 50 && !raw->started_process.load(); ++tries)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      const auto* process = dynamic_cast<const HostProcess*>(raw->started_process.load());
      return process && process->owns(pid);
    };
  generation.connection =
      std::make_unique<Connection>(endpoint, std::int64_t(settings_.limits.max_message_mb) << 20, admission, std::move(events));
  // The folder keeps everyone else out; the plugin's user must be able to connect.
  ::chmod((socket_dir / "plugin.sock").c_str(), 0666);
  HostLaunch launch{manifest_, settings_.limits,
                    jailed ? host_endpoint(kJailSocketDir) : endpoint,
                    token, scratch_dir(), search_path(run_), run_.python, run_.jail, identity, granted_,
                    socket_dir, manifest_.name + "-" + std::to_string(generation.number), scratch,
                    gate_ ? gate_->region() : nullptr, images_, generation.serving_word.fd()};
  if (launch.model_region) launch.model_region->give_back_all();  // a new host owns nothing its predecessor was lent
  // (Its image slots are each given back by the call that lent it, whose host this one replaces.)
  generation.process = std::make_unique<HostProcess>(launch);
  generation.started_process = generation.process.get();
}

void SupervisedPlugin::open_remote(Generation& generation, const std::string& token, ConnectionEvents events) {
  auto host = std::make_unique<RemoteHost>(link_->endpoint);
  RemoteHost* remote = host.get();
  events.on_relay = [remote](const wire::Message& message) { remote->heard(message); };
  events.on_link_lost = [remote](const std::string& why) { remote->link_lost(why); };
  generation.process = std::move(host);
  generation.started_process = remote;
  generation.connection = std::make_unique<Connection>(*link_, std::int64_t(settings_.limits.max_message_mb) << 20, std::move(events));
  remote->open(*generation.connection, manifest_.name, token);
}

void SupervisedPlugin::start(bool mechanism_switched) {
  auto generation = std::make_shared<Generation>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation->number = ++generation_;
  }
  const int number = generation->number;
  const bool jailed = run_.jail.mode == JailSettings::Mode::full;
  const std::string token = random_token();
  // A remote host connects to its server with the token, as a local one to this trainer.
  const bool plain = settings_.remote || plain_;
  if (settings_.remote)
    open_remote(*generation, token, connection_events(*generation));
  else
    open_local(*generation, token, connection_events(*generation), plain);

  auto fail = [&](const std::string& why, bool load_failure = false) {
    generation->process->kill_group();
    generation->process->wait_for_exit(std::chrono::seconds(2));
    std::string detail = why;
    std::string explanation;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      explanation = last_log_error_;
    }
    if (explanation.empty()) explanation = generation->process->last_error_line();
    if (!explanation.empty()) detail += ": " + explanation;
    const std::string message = "plugin '" + settings_.entry + "' could not start: " + detail;
    if (load_failure) throw LoadFailure(message);
    throw std::runtime_error(message);
  };

  std::optional<Json> hello;
  try {
    hello = generation->connection->await_hello(kHelloTimeout, [&] { return generation->process->running(); });
  } catch (const MalformedHello& e) {
    fail(std::string("its hello is malformed: ") + e.what(), true);
  } catch (const WrongMechanism& e) {
    // Only in the full jail can a connection without credentials be told apart (its socket is in
    // the plugin's own mount namespace, and the kernel names the process that connected): there
    // the start is made again at once the other way, which is negotiation, not a fault.
    if (!jailed) fail(std::string(e.what()) + "; the weak jail serves only connections with them", true);
    if (!std::exchange(mechanism_switched, true)) {
      plain_ = !plain;
      log_->info("{}: {}; starting it again {}", manifest_.name, e.what(),
                 plain ? "without credentials (protocol 1), on its jailed socket, which admits only its own processes"
                       : "with PLAIN credentials");
      generation->process->kill_group();
      generation->process->wait_for_exit(std::chrono::seconds(2));
      return start(mechanism_switched);
    }
    fail(e.what());  // both ways failed: a fault like a crash at start (a host that died mid-handshake)
  }
  if (!hello) {
    const std::string refused = generation->connection->refused_connection();
    if (generation->process->running())
      fail("no hello within " + std::to_string(kHelloTimeout.count()) + " s" + (refused.empty() ? "" : " (" + refused + ")"));
    // give a load failure's log notification a moment to arrive
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto status = generation->process->exit_status();
    if (status && *status == kExitLoadFailure) fail("it failed to load", true);
    // A remote host's link says for itself what went wrong ("nothing accepts connections at ...").
    const std::string how = generation->process->exit_description();
    fail(settings_.remote ? how : "the host ended before hello (" + how + ")");
  }
  // A remote host's own manifest has the option defaults, and its server the scratch folder.
  const Json opened = settings_.remote ? dynamic_cast<RemoteHost&>(*generation->process).opened() : Json();
  Json options = settings_.remote ? opened.value("options", Json::object()) : manifest_.options;
  options.merge_patch(settings_.options);
  Welcomed welcomed;
  try {
    Json fields = {{"options", options},
                   {"scratch_dir", settings_.remote ? opened.value("scratch_dir", std::string()) : scratch_dir().string()}};
    fields.update(run_.rank_fields());
    welcomed = welcome(*generation->connection, *hello, token, plain, std::move(fields));
  } catch (const HelloRefused& e) {
    fail(e.what(), true);
  }
  generation->connection->send_attachments((*hello).value("attachments", false));
  generation->maps_images = images_ && (*hello).value("image_region", false);
  const auto& [hooks, unknown, protocol] = welcomed;
  const auto& catalogue = Schemas::instance().hook_catalogue()["hooks"];
  for (const auto& hook : unknown)
    log_->warn("{}: ignoring hook '{}' of its hello, which is not in schemas/hooks.json{}", manifest_.name, hook,
               did_you_mean(hook, Schemas::instance().hook_names()));
  // (An entry without a manifest that implements a model hook ungranted stops the run: ModelAccess.)
  for (const auto& hook : hooks)
    if (!gate_ && has_manifest() && catalogue[hook].value("model_access", false) && number == 1)
      log_->warn("{} implements {}, which is not called: its manifest asks for no model_access (docs/protocol.md, section 9)",
                 manifest_.name, hook);
  if (!restore_state(*generation, hooks)) {
    // It may hold half the refused state: a fresh host, which starts empty, takes its place.
    generation->process->kill_group();
    generation->process->wait_for_exit(std::chrono::seconds(2));
    return start();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  hooks_ = hooks;
  unknown_hooks_ = unknown;
  protocol_ = protocol;
  current_ = generation;
  if (settings_.remote)
    remote_ = {{"endpoint", link_->endpoint}, {"runtime", opened.value("runtime", "")}, {"version", opened.value("version", "")},
               {"secure", !settings_.remote->insecure}};
  log_->info("{} {} ({}, {}, protocol {}) is ready: {}", manifest_.name,
             settings_.remote ? remote_["version"].get<std::string>() : manifest_.version,
             settings_.remote ? remote_["runtime"].get<std::string>() : manifest_.runtime, generation->process->where(), protocol,
             fmt::join(hooks_, ", "));
}

std::vector<std::string> SupervisedPlugin::unknown_hooks() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return unknown_hooks_;
}

int SupervisedPlugin::protocol() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return protocol_;
}

}  // namespace bulkhead
