#include "supervisor/supervised_plugin.hpp"

#include <endian.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cmath>
#include <random>
#include <sstream>
#include <set>
#include <thread>

#include <fmt/ranges.h>

#include <bulkhead/wire.hpp>

#include "common/log.hpp"
#include "common/paths.hpp"
#include "common/schemas.hpp"
#include "common/spelling.hpp"
#include "supervisor/handshake.hpp"
#include "remote/keys.hpp"
#include "remote/remote_host.hpp"

namespace bulkhead {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kHelloTimeout = std::chrono::seconds(10);
constexpr int kExitLoadFailure = 78;

std::string random_token() {
  std::random_device device;
  std::ostringstream token;
  for (int i = 0; i < 4; ++i) token << std::hex << device();
  return token.str();
}

// What check_reply needs of what a hook was sent: the image's shape, the region slot lent with it.
// Not the pixels, which went to the plugin without a copy.
Json image_shape(const Json& image) {
  Json shape = Json::object();
  if (image.is_object())
    for (const char* key : {"width", "height", "mode"})
      if (image.contains(key)) shape[key] = image[key];
  return shape;
}

Json sent_shape(const Json& params, std::optional<int> slot) {
  Json sent = Json::object();
  if (slot) sent["lent_slot"] = *slot;
  if (params.is_object() && params.contains("image") && params["image"].is_object()) sent["image"] = image_shape(params["image"]);
  return sent;
}

// What check_reply needs of one item of a batch, as if it had been sent alone.
Json item_shape(const TransformHooks& hooks, const Json& item) {
  if (!item.is_object()) return Json::object();
  return {{hooks.item_key, image_shape(item)}};
}

// The transforms whose params carry images (schemas/hooks.json: a $ref to
// protocol/image.schema.json): the hooks whose pixels may travel through the host's image region.
// Only transforms: the SDKs hand other hooks' images (a method's samples) to the plugin as the wire
// has them.
bool takes_images(const std::string& hook) {
  static const std::set<std::string> hooks = [] {
    std::set<std::string> with_images;
    for (const auto& [name, spec] : Schemas::instance().hook_catalogue()["hooks"].items())
      if (spec.value("kind", "") == "transform" && spec.contains("params") &&
          spec["params"].dump().find("image.schema.json") != std::string::npos)
        with_images.insert(name);
    return with_images;
  }();
  return hooks.count(hook) > 0;
}

// Hooks whose reply may be nil (most observers answer so): such a reply needs no schema walk.
bool nil_is_a_valid_reply(const std::string& hook) {
  static const std::set<std::string> hooks = [] {
    std::set<std::string> nil_ok;
    for (const auto& [name, spec] : Schemas::instance().hook_catalogue()["hooks"].items())
      if (Schemas::instance().validate("hooks.json#/hooks/" + name + "/result", nullptr).empty()) nil_ok.insert(name);
    return nil_ok;
  }();
  return hooks.count(hook) > 0;
}

bool all_finite(const Json& value) {
  if (value.is_number_float()) return std::isfinite(value.get<double>());
  if (value.is_structured())
    return std::all_of(value.begin(), value.end(), [](const Json& item) { return all_finite(item); });
  return true;
}

bool valid_utf8(const std::string& text) {
  try {
    (void)Json(text).dump();
    return true;
  } catch (const Json::type_error&) {
    return false;
  }
}

// The region slot a model hook's request lends the plugin: where its tensors are. A notify hook's
// reply is judged without its params; its conclusion gets {"lent_slot": n} instead.
std::optional<int> lent_slot(const Json& params) {
  if (params.contains("lent_slot")) return params["lent_slot"].get<int>();
  if (!params.contains("tensors")) return std::nullopt;
  for (const auto& tensor : params["tensors"])
    if (tensor["tensor"].contains("slot")) return tensor["tensor"]["slot"]["index"].get<int>();
  return std::nullopt;
}

// A quarantine reason is one line, for the console and the run report; the traceback that may
// follow a fault's message is in train.log already.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// The host exited 78 before its hello (bad library, import error), or its hello cannot be
// accepted (another protocol version, a wrong token, out of schema): starting it again will not help, so the plugin is
// quarantined at once instead of restarted, and at the first start training does not begin.
struct LoadFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::vector<std::filesystem::path> search_path(const RunInfo& run) {
  std::vector<std::filesystem::path> path;
  if (!run.config_dir.empty()) path.push_back(run.config_dir);
  path.push_back(std::filesystem::current_path());
  path.push_back(paths::home());
  return path;
}

}  // namespace

// One start of the host: the process and its connection. Replaced whole on restart.
struct SupervisedPlugin::Generation {
  int number = 0;
  std::unique_ptr<PluginHost> process;  // a HostProcess, or a RemoteHost
  // The connection's I/O thread reads the process through this, set once the process exists.
  std::atomic<PluginHost*> started_process{nullptr};
  // Its BULKHEAD_SERVING word: one slot of 8 bytes, the host's for its life, which it writes and
  // the trainer only reads (so a hostile host can blame only its own requests).
  SharedRegion serving_word{1, 8};
  // Declared after the process and the serving word, so destroyed first: its I/O thread, which
  // reads both when the host dies, never outlives them.
  std::unique_ptr<Connection> connection;
  Clock::time_point started = Clock::now();
  bool dead = false;  // killed or exited: calls skip it until it is replaced
  bool maps_images = false;  // its hello says "image_region": true, and it was handed one

  std::uint32_t serving() {
    const auto* word = reinterpret_cast<const std::uint32_t*>(serving_word.reply_slot(0).data);
    return le32toh(__atomic_load_n(word, __ATOMIC_ACQUIRE));
  }
};

SupervisedPlugin::SupervisedPlugin(Manifest manifest, PluginSettings settings, RunInfo run, std::filesystem::path runtime_dir,
                                   ControlSink control, AbortSink abort)
    : manifest_(std::move(manifest)),
      settings_(std::move(settings)),
      run_(std::move(run)),
      runtime_dir_(std::move(runtime_dir)),
      control_(std::move(control)),
      abort_(std::move(abort)),
      log_(logger("plugins")),
      // Until a hello says otherwise, the manifest's hooks (or, for a bare EveryDream2 class path,
      // every hook), so that a plugin whose first start failed is still called and restarted.
      hooks_(manifest_.hooks),
      policy_({std::chrono::milliseconds(settings_.restart_backoff_ms), settings_.max_restarts, settings_.restart_window_s}),
      granted_(Permissions::from_json(settings_.grant, run_.config_dir)) {
  const auto problem = ungranted(manifest_.name, manifest_.path, manifest_.permissions, granted_, run_.config_name());
  if (!problem.empty()) throw std::runtime_error(problem);
  if (hooks_.empty()) hooks_ = Schemas::instance().hook_names();
  // It sees and writes what its manifest asks for: the grant may give more, never less. An
  // EveryDream2 class path has no manifest: what train.json grants it is all it asks.
  const auto& model_access = manifest_.path.empty() ? granted_.model_access : manifest_.permissions.model_access;
  if (!model_access.empty()) {
    gate_ = std::make_shared<ModelGate>(manifest_.name, model_access,
                                        ModelGateLimits{settings_.limits.max_update_norm,
                                                        settings_.limits.max_update_staleness_steps});
    // One region for the plugin's life: a restarted host maps the same one. (No memory is
    // shared with another machine: a remote host's tensors travel inline.)
    if (!settings_.remote)
      gate_->set_region(std::make_shared<SharedRegion>(std::size_t(settings_.limits.model_region_slots),
                                                       std::size_t(settings_.limits.model_region_slot_mb) << 20));
  }
  if (settings_.remote) {
    link_ = remote_link(manifest_.name, *settings_.remote, run_.config_dir);
    if (settings_.remote->insecure)
      log_->warn("{} is remote on plain TCP (\"insecure\": true): anyone on the network between this trainer and {} can read "
                 "and change what passes, and anyone who reaches it can use the plugin",
                 manifest_.name, link_->endpoint);
  }
  // Like the model's, one image region for the host's life: a restarted host maps the same one.
  // Its pages are taken only as they are first written.
  if (!settings_.remote && settings_.limits.image_region_slots > 0 && std::any_of(hooks_.begin(), hooks_.end(), takes_images))
    images_ = std::make_shared<SharedRegion>(std::size_t(settings_.limits.image_region_slots),
                                             std::size_t(settings_.limits.image_region_slot_mb) << 20,
                                             SharedRegion::Sides::split);
}

SupervisedPlugin::~SupervisedPlugin() { stop(); }

bool SupervisedPlugin::implements(const std::string& hook) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::find(hooks_.begin(), hooks_.end(), hook) != hooks_.end();
}

std::filesystem::path SupervisedPlugin::scratch_folder(const PluginIdentity& identity) const {
  if (run_.scratch_dir.empty()) return {};
  const auto dir = run_.scratch_dir / manifest_.name;
  std::filesystem::create_directories(dir);
  if (identity.uid >= 0 && ::chown(dir.c_str(), identity.uid, identity.gid) != 0)
    throw std::runtime_error("cannot hand " + dir.string() + " to the plugin's user: " + std::strerror(errno));
  return dir;
}

std::filesystem::path SupervisedPlugin::scratch_dir() const {
  if (run_.jail.mode == JailSettings::Mode::full) return kJailScratchDir;
  return run_.scratch_dir.empty() ? std::filesystem::path() : run_.scratch_dir / manifest_.name;
}

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

bool SupervisedPlugin::aborts_on(const std::string& hook) const {
  // A batch that fails whole is tried again item by item: the item that then fails decides.
  if (TransformHooks::is_batch_hook(hook)) return false;
  if (settings_.abort_on_failure) return *settings_.abort_on_failure;
  const auto& hooks = Schemas::instance().hook_catalogue()["hooks"];
  return hooks.contains(hook) && hooks[hook].value("on_failure", "skip") == "abort";
}

std::chrono::milliseconds SupervisedPlugin::deadline(const std::string& hook) const {
  if (settings_.timeout_ms) return std::chrono::milliseconds(*settings_.timeout_ms);
  const auto& hooks = Schemas::instance().hook_catalogue()["hooks"];
  return std::chrono::milliseconds(hooks.contains(hook) ? hooks[hook]["deadline_ms"].get<int>() : 2000);
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
  for (const auto& hook : hooks)
    if (!gate_ && catalogue[hook].value("model_access", false) && number == 1)
      log_->warn("{} implements {}, which is not called: its {} grants it no model_access (docs/protocol.md, section 9)",
                 manifest_.name, hook, manifest_.path.empty() ? "entry in " + run_.config_name() : "manifest asks for");
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

std::string SupervisedPlugin::stop() {
  std::shared_future<void> restarting;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    restarting = std::move(restart_task_);
  }
  if (restarting.valid()) restarting.wait();
  release_retired();
  std::shared_ptr<Generation> generation;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation = std::move(current_);
    shut_down_ = true;
  }
  // A host that died before has had its fault counted: only how a running one ends is news.
  if (!generation || !generation->process->running()) return "";
  generation->connection->notify("shutdown", {{"reason", "training ended"}});
  std::string wrong;
  if (!generation->process->wait_for_exit(std::chrono::seconds(2))) {
    generation->process->terminate(std::chrono::seconds(3));
    wrong = "it was still running 2 s after the shutdown notification, and was terminated";
  } else if (generation->process->exit_status() != 0) {
    wrong = "after the shutdown notification it ended with " + generation->process->exit_description() +
            ", not exit status 0";
  }
  if (!wrong.empty()) log_->warn("{}: {}", manifest_.name, wrong);
  return wrong;
}

Reply SupervisedPlugin::probe(const std::string& method, const Json& params) {
  std::shared_ptr<Generation> generation;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (current_ && !current_->dead) generation = current_;
  }
  if (!generation) return Reply{Reply::Status::disconnected, nullptr, "the plugin is not running", 0, ""};
  return generation->connection->call(method, params, deadline(method));
}

std::vector<std::string> SupervisedPlugin::unknown_hooks() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return unknown_hooks_;
}

std::vector<std::string> SupervisedPlugin::protocol_problems() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return counters_.protocol_problems();
}

void SupervisedPlugin::protocol_problem(const std::string& what) {
  log_->warn("{}: {}", manifest_.name, what);
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.protocol_problem(what);
}

void SupervisedPlugin::reload(bool keep_state, std::int64_t global_step) {
  // The running host's state is the freshest there is: asked for before it goes.
  if (keep_state && keeps_state()) snapshot_state({{"global_step", global_step}, {"reason", "reload"}}, true);
  std::shared_ptr<Generation> old;
  long reloads = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!keep_state) state_.reset();
    reloads = counters_.count_reload();
    policy_.forgive();
    switched_off_ = false;
    if (current_ && !current_->dead) old = current_, current_->dead = true;
  }
  if (old) old->process->kill_group();
  log_->warn("{}: restarting at the user's request (reload {}{})", manifest_.name, reloads,
             keep_state ? "" : ", without its state");
}

void SupervisedPlugin::switch_off(const std::string& why) {
  std::shared_ptr<Generation> to_kill;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!policy_.quarantine(why)) return;  // already off
    switched_off_ = true;
    if (current_) to_kill = current_, current_->dead = true;
  }
  if (to_kill) to_kill->process->kill_group();
  retire(std::move(to_kill));
  log_->warn("{}: {}: off for the rest of this run", manifest_.name, why);
}

bool SupervisedPlugin::keeps_state() const {
  return settings_.keep_state && implements("get_state") && implements("set_state");
}

void SupervisedPlugin::snapshot_state(const Json& params, bool wait) {
  const std::int64_t step = params.at("global_step");
  if (!wait) {
    send("get_state", params, [this, step](const Json& result) { keep_state(result, step); });
    return;
  }
  if (auto result = invoke("get_state", params)) keep_state(*result, step);
}

void SupervisedPlugin::keep_state(const Json& result, std::int64_t global_step) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ && state_->global_step > global_step) return;  // a late reply to an older request
  state_ = StateSnapshot{result.at("state"), global_step};
}

Json SupervisedPlugin::state_snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!state_) return nullptr;
  return {{"state", state_->state}, {"global_step", state_->global_step}};
}

void SupervisedPlugin::restore_from(const Json& snapshot) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (settings_.keep_state) state_ = StateSnapshot{snapshot.at("state"), snapshot.at("global_step").get<std::int64_t>()};
}

bool SupervisedPlugin::restore_state(Generation& generation, const std::vector<std::string>& hooks) {
  std::optional<StateSnapshot> snapshot;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!settings_.keep_state || !state_) return true;
    snapshot = state_;
  }
  if (std::find(hooks.begin(), hooks.end(), "set_state") == hooks.end()) {
    log_->warn("{}: its new code has no set_state: it starts without its state of step {}", manifest_.name,
               snapshot->global_step);
    return true;
  }
  const Json params = {{"state", snapshot->state}, {"global_step", snapshot->global_step}};
  const Reply reply = generation.connection->call("set_state", params, deadline("set_state"));
  const std::string problem = reply.status == Reply::Status::ok ? check_reply("set_state", params, reply.result)
                                                                : describe_failure("set_state", reply);
  std::lock_guard<std::mutex> lock(mutex_);
  if (problem.empty()) {
    ++state_restores_;
    log_->info("{}: carries on from its state of step {}", manifest_.name, snapshot->global_step);
    return true;
  }
  state_.reset();
  ++state_refusals_;
  state_problem_ = "set_state " + first_line(problem);
  log_->warn("{}: set_state {}: it starts empty, without its state of step {}", manifest_.name, first_line(problem),
             snapshot->global_step);
  return false;
}

// Letting a killed generation go reaps its processes and joins its I/O thread (tens of ms), so it
// is done outside the lock, and never by a notify's caller (ready_generation) or an I/O thread.
void SupervisedPlugin::release_retired() {
  std::vector<std::shared_ptr<Generation>> retired;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    retired.swap(retired_);
  }
}

// fault() and quarantine() run on a connection's I/O thread; were they to drop the last reference
// to that connection's generation, its destructor would join the thread it runs on. They park it
// here instead, and ready_generation or the restart (never an I/O thread) lets it go.
void SupervisedPlugin::retire(std::shared_ptr<Generation> generation) {
  if (!generation) return;
  std::lock_guard<std::mutex> lock(mutex_);
  retired_.push_back(std::move(generation));
}

std::shared_ptr<SupervisedPlugin::Generation> SupervisedPlugin::ready_generation(std::chrono::milliseconds wait,
                                                                                 std::chrono::milliseconds backoff_wait) {
  if (wait.count() > 0) release_retired();  // a notify leaves it to the restart
  std::shared_ptr<Generation> idle_dead;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (policy_.quarantined()) return nullptr;
    if (current_ && !current_->dead) {
      if (current_->process->running()) return current_;
      idle_dead = current_;  // died between calls (killed from outside, OOM killer, ...)
    }
  }
  const auto give_up = Clock::now() + wait;
  if (idle_dead) {
    // Calls still in flight on it will report the crash as theirs, with their hook (within the
    // connection's next look at the process), and so will the one it blamed, whose caller may not
    // have concluded yet: a call that may wait lets them, then goes on to the restart; a notify is
    // skipped. With none in flight and none blamed, it really died between calls.
    auto reported = [&] {
      std::lock_guard<std::mutex> lock(mutex_);
      return current_ != idle_dead || idle_dead->dead;
    };
    while ((idle_dead->connection->pending() > 0 || idle_dead->connection->blamed_a_request()) && !reported()) {
      if (Clock::now() >= give_up) return nullptr;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    bool between_calls = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      between_calls = current_ == idle_dead && !idle_dead->dead;
      if (between_calls) counters_.count_failure("(idle)", Reply::Status::disconnected);
    }
    if (between_calls)
      fault("(idle)", "crashed between calls: " + idle_dead->process->exit_description(), idle_dead->number, true);
  }
  std::shared_future<void> previous;  // a finished restart; released outside the lock
  std::shared_future<void> restarting;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (policy_.quarantined()) return nullptr;
    if (current_ && !current_->dead) return current_;
    if (!starting_ && !policy_.may_start()) {
      // Backing off after a fault: a call waits for the backoff, up to its deadline (a notify
      // does not wait), and counts the wait; the restart then begins below.
      const auto start_at = policy_.next_start();
      if (wait.count() == 0 || start_at > std::min(give_up, Clock::now() + backoff_wait)) return nullptr;
      counters_.count_backoff_wait();
      lock.unlock();
      std::this_thread::sleep_until(start_at);
      lock.lock();
      if (policy_.quarantined()) return nullptr;
      if (current_ && !current_->dead) return current_;
    }
    if (!starting_) {
      if (!policy_.may_start()) return nullptr;
      // Never in the caller's thread: a start may wait seconds for a hello, and the caller is a
      // loader worker or the training loop.
      starting_ = true;
      previous = std::move(restart_task_);
      restart_task_ = std::async(std::launch::async, [this, old = std::move(current_)]() mutable {
                        old.reset();
                        release_retired();
                        restart();
                      }).share();
    }
    restarting = restart_task_;
  }
  if (wait.count() > 0) restarting.wait_until(give_up);
  std::lock_guard<std::mutex> lock(mutex_);
  return current_ && !current_->dead ? current_ : nullptr;
}

std::shared_ptr<SupervisedPlugin::Generation> SupervisedPlugin::restart() {
  try {
    start();
    std::lock_guard<std::mutex> lock(mutex_);
    starting_ = false;
    log_->warn("{}: restarted (restart {})", manifest_.name, counters_.count_restart());
    return current_;
  } catch (const LoadFailure& e) {
    log_->error("{}", e.what());
    count_failure("(start)", Reply::Status::disconnected);
    quarantine("(start)", e.what());
    std::lock_guard<std::mutex> lock(mutex_);
    starting_ = false;
    return nullptr;
  } catch (const std::exception& e) {
    start_failed(e);
    std::lock_guard<std::mutex> lock(mutex_);
    starting_ = false;
    return nullptr;
  }
}

// A start that crashed or timed out: a fault, and the next start waits for the backoff.
void SupervisedPlugin::start_failed(const std::exception& e) {
  log_->error("{}", e.what());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counters_.count_failure("(start)", Reply::Status::error);
    policy_.start_failed();
  }
  fault("(start)", e.what(), generation_, false);
}

bool SupervisedPlugin::count_call(const std::string& hook, bool sent) {
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.count_call(hook, sent);
  return sent;
}

void SupervisedPlugin::count_failure(const std::string& hook, Reply::Status status) {
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.count_failure(hook, status);
}

std::optional<SupervisedPlugin::Exchange> SupervisedPlugin::exchange(const std::string& hook, Json params,
                                                                     std::chrono::milliseconds limit,
                                                                     std::chrono::milliseconds backoff_wait) {
  const auto began = Clock::now();
  auto generation = ready_generation(limit, backoff_wait);
  if (!count_call(hook, generation != nullptr)) return std::nullopt;
  const auto image_slot = takes_images(hook) ? place_images(*generation, params) : std::nullopt;
  // Time spent waiting for a restart comes out of the call's deadline.
  const auto left = limit - std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began);
  return Exchange{generation->connection->call(hook, std::move(params), std::max(left, std::chrono::milliseconds(1))),
                  generation->number, image_slot};
}

std::optional<Json> SupervisedPlugin::conclude(const std::string& hook, Json sent, Exchange answer) {
  if (answer.image_slot) sent["image_slot"] = *answer.image_slot;
  auto result = conclude(hook, sent, std::move(answer.reply), answer.generation);
  if (answer.image_slot) images_->give_back(*answer.image_slot);
  return result;
}

std::optional<Json> SupervisedPlugin::invoke(const std::string& hook, Json params) {
  const auto slot = lent_slot(params);
  const Json sent = sent_shape(params, slot);
  auto answer = exchange(hook, std::move(params), deadline(hook), deadline(hook));
  std::optional<Json> result;
  if (answer) result = conclude(hook, sent, std::move(*answer));
  release_slot(slot);
  return result;
}

bool SupervisedPlugin::takes_batches(const TransformHooks& hooks) const {
  if (!implements(hooks.batch_hook)) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  return batches_refused_.count(hooks.batch_hook) == 0;
}

std::vector<std::optional<Json>> SupervisedPlugin::transform(const TransformHooks& hooks, const std::vector<Json>& items) {
  // One item goes as itself to a plugin that has the per-item hook: the same message as ever.
  if (!takes_batches(hooks) || (items.size() == 1 && implements(hooks.item_hook))) return transform_each(hooks, items);
  if (auto out = transform_batch(hooks, items)) return std::move(*out);
  auto retried = transform_each(hooks, items);
  // A batch that failed (not one refused) with every item fine on its own: the fault was the
  // batch's, not an item's, and counts as one now.
  if (takes_batches(hooks) && std::all_of(retried.begin(), retried.end(), [](const auto& item) { return item.has_value(); }))
    count_batch_fault(hooks.batch_hook);
  return retried;
}

std::optional<std::vector<std::optional<Json>>> SupervisedPlugin::transform_batch(const TransformHooks& hooks,
                                                                                  const std::vector<Json>& items) {
  const int count = static_cast<int>(items.size());
  // deadline_ms of a batched hook is per item (schemas/hooks.json). A batch waits no longer for a
  // backoff than one item would: a plugin that keeps crashing must not hold the loader up longer
  // than it would with its items one by one.
  const auto per_item = deadline(hooks.item_hook);
  auto answer = exchange(hooks.batch_hook, {{hooks.batch_key, items}}, per_item * count, per_item);
  std::vector<std::optional<Json>> out(items.size());
  if (!answer) {  // no host (quarantined, or not back in time): every item passes through
    std::lock_guard<std::mutex> lock(mutex_);
    counters_.count_skipped_items(hooks.batch_hook, count);
    return out;
  }
  if (answer->reply.status == Reply::Status::error && answer->reply.code == "unknown_method") {
    // Its hello listed the batched hook, but it does not answer it: found out once, not per batch.
    {
      std::lock_guard<std::mutex> lock(mutex_);
      batches_refused_.insert(hooks.batch_hook);
    }
    protocol_problem("lists " + hooks.batch_hook + " in its hello but answers unknown_method to it: its " +
                     hooks.batch_key + " go one by one from now on");
    return std::nullopt;
  }
  const int generation = answer->generation;
  auto result = conclude(hooks.batch_hook, Json::object(), std::move(*answer));
  if (!result) return std::nullopt;  // counted; each item is tried again on its own
  Json& values = (*result)[hooks.batch_key];
  if (int(values.size()) != count) {
    const std::string what = "sent " + std::to_string(values.size()) + " " + hooks.batch_key + " back for " +
                             std::to_string(count) + ": each is tried again on its own";
    count_failure(hooks.batch_hook, Reply::Status::invalid);
    fault(hooks.batch_hook, what, generation, false);
    return std::nullopt;
  }
  long failed = 0;
  for (int i = 0; i < count; ++i) {
    Json one = {{hooks.item_key, std::move(values[i])}};
    const std::string invalid = check_reply(hooks.item_hook, item_shape(hooks, items[i]), one);
    if (invalid.empty()) {
      out[i] = std::move(one[hooks.item_key]);
      continue;
    }
    // A wrong item is that item's fault alone: it passes through, the others are kept.
    ++failed;
    count_failure(hooks.item_hook, Reply::Status::invalid);
    fault(hooks.item_hook,
          "sent an invalid reply for item " + std::to_string(i) + " of a batch of " + std::to_string(count) + " (" +
              hooks.batch_hook + "): " + invalid,
          generation, false);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.count_items(hooks.batch_hook, count, failed);
  return out;
}

std::vector<std::optional<Json>> SupervisedPlugin::transform_each(const TransformHooks& hooks,
                                                                  const std::vector<Json>& items) {
  std::vector<std::optional<Json>> out(items.size());
  const bool per_item_hook = implements(hooks.item_hook);
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!per_item_hook) {
      if (auto one = transform_batch(hooks, {items[i]}))
        out[i] = std::move((*one)[0]);
      else if (takes_batches(hooks))
        count_batch_fault(hooks.batch_hook);  // a batch of one is its item
    } else if (auto result = invoke(hooks.item_hook, {{hooks.item_key, items[i]}})) {
      out[i] = std::move((*result)[hooks.item_key]);
    }
  }
  return out;
}

std::optional<int> SupervisedPlugin::place_images(const Generation& generation, Json& params) {
  std::optional<int> slot = generation.maps_images ? images_->lend() : std::nullopt;
  if (slot && wire::images_to_slot(params, images_->request_slot(*slot)) == 0) {
    images_->give_back(*slot);  // nothing fitted
    slot.reset();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  ++(slot ? image_requests_in_region_ : image_requests_inline_);
  return slot;
}

std::string SupervisedPlugin::take_images(const std::string& hook, const Json& sent, Json& result) {
  if (!takes_images(hook)) return "";
  try {
    if (sent.contains("image_slot"))
      wire::images_from_slot(result, images_->reply_slot(sent["image_slot"].get<int>()));
    else if (wire::image_slot_index(result))
      return "the reply's image lies in the image region, but its request lent it no slot";
  } catch (const wire::DecodeError& e) {
    return std::string("the reply's image: ") + e.what();
  }
  return "";
}

void SupervisedPlugin::send(const std::string& hook, const Json& params, std::function<void(const Json&)> on_result) {
  auto generation = ready_generation(std::chrono::milliseconds(0));  // a notify hook never waits
  const auto slot = lent_slot(params);
  if (!count_call(hook, generation != nullptr)) return release_slot(slot);
  const int number = generation->number;
  generation->connection->request(hook, params, deadline(hook), [this, hook, number, slot, on_result](Reply reply) {
    auto result = conclude(hook, sent_shape(Json(), slot), std::move(reply), number);
    release_slot(slot);
    if (result && on_result) on_result(*result);
  });
}

void SupervisedPlugin::release_slot(std::optional<int> slot) {
  if (slot && gate_ && gate_->region()) gate_->region()->give_back(*slot);
}

std::string SupervisedPlugin::check_reply(const std::string& hook, const Json& params, const Json& result) {
  // (The model gate judges a model hook's reply, nil included.)
  if (result.is_null() && !gate_ && nil_is_a_valid_reply(hook)) return "";
  // A state is the plugin's own business (an average not yet begun may well be NaN); only its size is ours.
  if (hook != "get_state" && !all_finite(result)) return "the reply holds NaN or infinity";
  auto errors = Schemas::instance().validate("hooks.json#/hooks/" + hook + "/result", result);
  if (!errors.empty()) return "the reply breaks schemas/hooks.json (" + hook + " result): " + join_errors(errors);
  if (hook == "transform_caption") {
    const auto& caption = result["caption"].get_ref<const std::string&>();
    if (!valid_utf8(caption)) return "the caption is not valid UTF-8";
    if (caption.size() > std::size_t(settings_.limits.max_caption_bytes))
      return "the caption has " + std::to_string(caption.size()) + " bytes, over the limit of " +
             std::to_string(settings_.limits.max_caption_bytes);
  }
  if (hook == "get_state") {
    const std::size_t bytes = Json::to_msgpack(result["state"]).size();
    if (bytes > std::size_t(settings_.limits.max_state_mb) << 20)
      return "the state has " + std::to_string(bytes) + " bytes encoded, over limits.max_state_mb of " +
             std::to_string(settings_.limits.max_state_mb) + " MB";
  }
  if (hook == "transform_pil_image") {
    try {
      const Image out = wire::image_header(result["image"]);
      if (!manifest_.resizes_images && params.contains("image")) {
        const auto& in = params["image"];
        if (out.width != in["width"].get<int>() || out.height != in["height"].get<int>() || out.mode != in["mode"])
          return "the image came back " + out.mode + " " + std::to_string(out.width) + "x" + std::to_string(out.height) +
                 ", not " + in["mode"].get<std::string>() + " " + std::to_string(in["width"].get<int>()) + "x" +
                 std::to_string(in["height"].get<int>()) + " (the manifest does not declare resizes_images)";
      }
    } catch (const wire::DecodeError& e) {
      return std::string("the image is malformed: ") + e.what();
    }
  }
  if (hook == "on_model_load" && gate_) return gate_->check_load_reply(result);
  // Last, so that a reply queues its model updates only when nothing else is wrong with it.
  if (result.is_object() && result.contains("updates")) {
    if (!gate_) return "the reply carries model updates, but the plugin's manifest asks for no model_access";
    return gate_->admit(result["updates"], lent_slot(params));
  }
  return "";
}

std::optional<Json> SupervisedPlugin::conclude(const std::string& hook, const Json& params, Reply reply, int generation) {
  if (reply.lost) {  // the crash is the request's the host died serving, counted and faulted there
    std::lock_guard<std::mutex> lock(mutex_);
    counters_.count_lost(hook);
    return std::nullopt;
  }
  if (reply.status != Reply::Status::ok) {
    count_failure(hook, reply.status);
    const bool restart = reply.status == Reply::Status::timeout || reply.status == Reply::Status::disconnected;
    fault(hook, describe_failure(hook, reply), generation, restart);
    return std::nullopt;
  }
  std::string invalid = take_images(hook, params, reply.result);
  if (invalid.empty()) invalid = check_reply(hook, params, reply.result);
  if (!invalid.empty()) {
    count_failure(hook, Reply::Status::invalid);
    fault(hook, invalid, generation, false);
    return std::nullopt;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counters_.count_ok(hook, reply.latency_ms);
  }
  if (reply.result.is_object() && reply.result.contains("control")) handle_control(reply.result["control"]);
  return std::move(reply.result);
}

std::string SupervisedPlugin::describe_failure(const std::string& hook, const Reply& reply) const {
  static const char* what[] = {"ok", "failed", "missed its deadline of", "sent an invalid reply", "crashed"};
  std::string description = what[int(reply.status)];
  if (reply.status == Reply::Status::timeout) description += " " + std::to_string(deadline(hook).count()) + " ms";
  if (!reply.detail.empty()) description += ": " + reply.detail;
  return description;
}

void SupervisedPlugin::fault(const std::string& hook, const std::string& what, int generation, bool restart) {
  // A batch's fault is not yet anyone's: its items are retried one by one, and the item that
  // fails again carries the fault (so a poison item costs one fault, as it did without batches).
  // Only a batch whose items all pass on their own counts it (count_batch_fault).
  const bool provisional = TransformHooks::is_batch_hook(hook);
  std::shared_ptr<Generation> to_kill;
  std::string quarantine_message, abort_message;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Several calls in flight when a host dies all fail; only the first one restarts it.
    if (restart && (!current_ || current_->number != generation || current_->dead)) return;
    if (restart) {
      to_kill = current_;
      current_->dead = true;
      // Exit 78 after the welcome: configure() failed. Restarting would only fail the same way.
      const auto status = current_->process->exit_status();
      if (status && *status == kExitLoadFailure &&
          policy_.quarantine("the plugin failed to load or configure (exit status 78)" +
                             (last_log_error_.empty() ? std::string() : ": " + first_line(last_log_error_))))
        quarantine_message = policy_.quarantine_reason();
      policy_.host_lost(current_->started, !provisional);
    }
    if (!provisional && policy_.count_fault(hook + " " + first_line(what))) {
      quarantine_message = policy_.quarantine_reason();
      if (current_) to_kill = current_, current_->dead = true;
    }
    if (aborts_on(hook)) abort_message = "plugin '" + manifest_.name + "' (on_failure: abort): " + hook + " " + what;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counters_.note_fault(hook, what);
  }
  log_->warn("{}: {} {}", manifest_.name, hook, what);
  if (to_kill) to_kill->process->kill_group();
  retire(std::move(to_kill));
  if (!quarantine_message.empty())
    log_->error("PLUGIN QUARANTINED: '{}' is off for the rest of this run ({})", manifest_.name, quarantine_message);
  if (!abort_message.empty()) abort_(abort_message);
}

void SupervisedPlugin::count_batch_fault(const std::string& batch_hook) {
  std::shared_ptr<Generation> to_kill;
  std::string quarantine_message;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!policy_.count_fault(batch_hook + " " + first_line(counters_.last_fault(batch_hook)))) return;
    quarantine_message = policy_.quarantine_reason();
    if (current_) to_kill = current_, current_->dead = true;
  }
  if (to_kill) to_kill->process->kill_group();
  retire(std::move(to_kill));
  log_->error("PLUGIN QUARANTINED: '{}' is off for the rest of this run ({})", manifest_.name, quarantine_message);
}

// Takes the plugin off for the rest of the run at once (a load failure on restart).
void SupervisedPlugin::quarantine(const std::string& hook, const std::string& why) {
  const std::string reason = first_line(why);
  std::shared_ptr<Generation> to_kill;
  std::string abort_message;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!policy_.quarantine(reason)) return;
    counters_.note_fault(hook, why);
    if (current_) to_kill = current_, current_->dead = true;
    if (aborts_on(hook)) abort_message = "plugin '" + manifest_.name + "' (on_failure: abort): " + hook + " " + why;
  }
  if (to_kill) to_kill->process->kill_group();
  retire(std::move(to_kill));
  log_->error("PLUGIN QUARANTINED: '{}' is off for the rest of this run ({})", manifest_.name, reason);
  if (!abort_message.empty()) abort_(abort_message);
}

void SupervisedPlugin::handle_control(const Json& requests) {
  auto errors = Schemas::instance().validate("protocol/control.schema.json", requests);
  if (!errors.empty()) {
    protocol_problem("rejected control requests " + requests.dump() + ": " + join_errors(errors));
    return;
  }
  for (const auto& request : requests) control_(manifest_.name, request);
}

int SupervisedPlugin::protocol() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return protocol_;
}

// Under the lock.
const char* SupervisedPlugin::status() const {
  if (policy_.quarantined()) return switched_off_ ? "stopped" : "quarantined";
  if (shut_down_) return "ended";
  return current_ && !current_->dead ? "running" : "restarting";
}

Json SupervisedPlugin::report() const {
  std::lock_guard<std::mutex> lock(mutex_);
  Json report = counters_.report();
  report.update({{"name", manifest_.name},
                 {"entry", settings_.entry},
                 {"runtime", manifest_.runtime},
                 {"version", manifest_.version},
                 {"protocol", protocol_ ? Json(protocol_) : Json(nullptr)},
                 {"on_failure", !settings_.abort_on_failure ? "per hook" : *settings_.abort_on_failure ? "abort" : "skip"},
                 {"status", status()},
                 {"quarantined", policy_.quarantined()},
                 {"quarantine_reason", policy_.quarantined() ? Json(policy_.quarantine_reason()) : Json(nullptr)},
                 {"state", {{"kept", settings_.keep_state && state_.has_value()},
                            {"global_step", state_ ? Json(state_->global_step) : Json(nullptr)},
                            {"restored", state_restores_},
                            {"refused", state_refusals_},
                            {"last_problem", state_problem_.empty() ? Json(nullptr) : Json(state_problem_)}}},
                 {"model_access", gate_ ? gate_->counters() : Json(nullptr)},
                 {"remote", settings_.remote ? remote_ : Json(nullptr)},
                 {"image_region", images_ ? Json{{"slots", images_->slots()},
                                                 {"slot_bytes", images_->slot_bytes()},
                                                 {"requests_through_region", image_requests_in_region_},
                                                 {"requests_inline", image_requests_inline_}}
                                          : Json(nullptr)}});
  return report;
}

}  // namespace bulkhead
