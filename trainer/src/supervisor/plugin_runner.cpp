#include "supervisor/plugin_runner.hpp"

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <functional>
#include <future>
#include <iomanip>
#include <map>
#include <mutex>
#include <thread>
#include <sstream>

#include <bulkhead/wire.hpp>

#include "common/log.hpp"
#include "common/schemas.hpp"
#include "supervisor/file_watch.hpp"
#include "supervisor/host_pool.hpp"
#include "supervisor/host_process.hpp"
#include "supervisor/jail_layers.hpp"
#include "supervisor/manifest.hpp"
#include "supervisor/resource_group.hpp"
#include "supervisor/supervised_plugin.hpp"

namespace bulkhead {
namespace fs = std::filesystem;

namespace {

// A remote plugin's stand-in: its manifest is on its host's machine. Until a hello says which
// hooks it implements it is called with every hook (as a bare EveryDream2 class path is), and
// what train.json grants it is all it asks.
Manifest remote_manifest(const PluginSettings& settings) {
  if (settings.method) throw std::runtime_error("method '" + settings.entry + "' is remote: a method runs on the trainer's machine");
  if (settings.pool > 1)
    throw std::runtime_error("plugin '" + settings.entry + "' is remote and has \"pool\": " + std::to_string(settings.pool) +
                             ": a pool is of local hosts; start one server per host instead");
  Permissions elsewhere = Permissions::from_json(settings.grant);
  elsewhere.model_access.clear();
  if (!elsewhere.empty())
    throw std::runtime_error("plugin '" + settings.entry + "' is remote, and its grant names " + elsewhere.describe() +
                             ": those are of its host's machine, granted there (bulkhead host serve --grant); "
                             "train.json grants a remote plugin only model_access");
  Manifest manifest;
  manifest.name = settings.entry;
  manifest.runtime = kRemoteRuntime;
  return manifest;
}

// What the report and the console say about the jail plugins run in.
Json describe_jail(const JailSettings& jail) {
  if (jail.mode == JailSettings::Mode::weak)
    return {{"mode", "weak"},
            {"warning", "PLUGINS ARE NOT FULLY JAILED (\"jail\": {\"mode\": \"weak\"}): no namespaces, so a plugin can read "
                        "whatever this user can, see the trainer's processes and reach local sockets; only seccomp, rlimits, the warden's whole-tree count, "
                        "Landlock (writes, where the kernel has it) and the environment allow-list hold (docs/sandbox.md)"}};
  // The warden's own count holds everywhere; a cgroup, where there is one, holds the same limits too.
  const std::string no_groups = ResourceGroup::unavailable();
  return {{"mode", "full"},
          {"limits", "memory, processes and CPU time for each plugin's whole process tree: the warden's count from /proc, and " +
                         (no_groups.empty() ? ResourceGroup::layer() : "no cgroup (" + no_groups + ")")}};
}

}  // namespace

struct PluginRunner::Impl {
  RunInfo run;
  Json jail = Json::object();
  fs::path runtime_dir;  // 0700: only this user can reach the sockets in it
  std::vector<std::unique_ptr<SupervisedPlugin>> plugins;
  std::map<const SupervisedPlugin*, HostPool> pools;  // a plugin's extra hosts (train.json "pool")
  mutable std::mutex mutex;
  std::vector<ControlRequest> control;
  std::optional<std::string> abort_reason;
  bool strict = std::getenv("BULKHEAD_STRICT_HOOKS") != nullptr;
  std::unique_ptr<FileWatch> watch;

  // Every host: each plugin's, followed by its pool's others.
  std::vector<SupervisedPlugin*> hosts() const {
    std::vector<SupervisedPlugin*> all;
    for (const auto& p : plugins) {
      all.push_back(p.get());
      if (auto pool = pools.find(p.get()); pool != pools.end())
        for (const auto& extra : pool->second.extra()) all.push_back(extra.get());
    }
    return all;
  }

  // Applies `act` to the named plugin's host and its pool's others; false when no plugin has the name.
  bool for_each_host_of(const std::string& name, const std::function<void(SupervisedPlugin&)>& act) {
    for (auto& p : plugins)
      if (p->name() == name) {
        act(*p);
        if (auto pool = pools.find(p.get()); pool != pools.end())
          for (const auto& extra : pool->second.extra()) act(*extra);
        return true;
      }
    return false;
  }

  // Items through every plugin that transforms them, in config order: each plugin on its own host
  // or, with a pool, on whichever of its hosts is least busy. A failed item passes through.
  std::vector<Json> transform(const TransformHooks& hooks, std::vector<Json> items) {
    for (auto& p : plugins) {
      if (!p->implements(hooks.item_hook) && !p->implements(hooks.batch_hook)) continue;
      auto pool = pools.find(p.get());
      auto results = pool == pools.end() ? p->transform(hooks, items) : pool->second.transform(*p, hooks, items);
      for (std::size_t i = 0; i < items.size(); ++i)
        if (results[i]) items[i] = std::move(*results[i]);
    }
    return items;
  }

  // The control requests queued from `first` on, in the order of the plugins that sent them.
  void put_in_config_order(std::size_t first) {
    auto rank = [this](const std::string& name) {
      for (std::size_t i = 0; i < plugins.size(); ++i)
        if (plugins[i]->name() == name) return i;
      return plugins.size();
    };
    std::lock_guard<std::mutex> lock(mutex);
    std::stable_sort(control.begin() + static_cast<std::ptrdiff_t>(std::min(first, control.size())), control.end(),
                     [&](const ControlRequest& a, const ControlRequest& b) { return rank(a.plugin) < rank(b.plugin); });
  }

  // Outgoing hooks must match the catalogue, kind and kwargs; checked when BULKHEAD_STRICT_HOOKS is
  // set (the trainer's tests set it; a benchmark may wait on a notify hook on purpose).
  void check_params(const std::string& hook, const std::string& kind, const Json& params) const {
    if (!strict) return;
    const auto& hooks = Schemas::instance().hook_catalogue()["hooks"];
    if (!hooks.contains(hook)) throw std::logic_error("the trainer runs '" + hook + "', which is not in schemas/hooks.json");
    if (hooks[hook]["kind"] != kind)
      throw std::logic_error("the trainer runs " + hook + " as a " + kind + " hook; schemas/hooks.json says " +
                             hooks[hook]["kind"].get<std::string>());
    auto errors = Schemas::instance().validate("hooks.json#/hooks/" + hook + "/params", params);
    if (errors.empty()) return;
    std::string text;
    for (const auto& e : errors) text += "\n  " + e.to_string();
    throw std::logic_error("the trainer's " + hook + " kwargs break schemas/hooks.json:" + text);
  }
};

PluginRunner::PluginRunner(std::vector<PluginSettings> settings, RunInfo run, const Json& saved_states)
    : impl_(std::make_unique<Impl>()) {
  impl_->run = std::move(run);
  if (impl_->run.scratch_dir.empty() && !impl_->run.run_dir.empty()) impl_->run.scratch_dir = impl_->run.run_dir / "plugin-scratch";
  if (settings.empty()) return;
  if (!impl_->run.scratch_dir.empty()) fs::create_directories(impl_->run.scratch_dir);
  impl_->jail = describe_jail(impl_->run.jail);
  if (impl_->run.jail.mode == JailSettings::Mode::full) {
    const std::string why = HostProcess::full_jail_unavailable(impl_->run.jail);
    if (!why.empty()) throw std::runtime_error(why);
    logger("plugins")->info("plugins are jailed: {}", impl_->jail["limits"].get<std::string>());
  }
  // What holds on this machine for this user, as `bulkhead doctor` says it.
  impl_->jail["layers"] = describe_layers(jail_layers(impl_->run.jail));
  logger("plugins")->info("jail layers: {}", impl_->jail["layers"].get<std::string>());
  if (impl_->jail.contains("warning")) logger("plugins")->warn("{}", impl_->jail["warning"].get<std::string>());

  std::string pattern = (fs::temp_directory_path() / "bulkhead-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("cannot create a runtime folder in " + fs::temp_directory_path().string());
  impl_->runtime_dir = pattern;
  chmod(pattern.c_str(), 0700);

  PluginCatalog catalog(plugin_dirs_from_environment());
  Impl* impl = impl_.get();
  std::map<std::string, std::size_t> entry_of;  // plugin name -> its 1-based place in train.json
  for (auto& s : settings) {
    Manifest manifest = s.remote ? remote_manifest(s) : catalog.resolve(s.entry, impl->run.config_dir);
    // Its report, state, cgroup and restarts are all kept by its name.
    if (const auto [first, fresh] = entry_of.emplace(manifest.name, entry_of.size() + 1); !fresh)
      throw std::runtime_error("plugin '" + manifest.name + "' is named twice in " + impl->run.config_name() + "'s plugins (entries " +
                               std::to_string(first->second) + " and " + std::to_string(entry_of.size() + 1) +
                               "): each plugin's report, state and jail are kept by its name, so each may run once");
    // A method's hooks are not a training plugin's: each must sit in its own place in train.json.
    if (s.method != (manifest.provides == "method"))
      throw std::runtime_error(s.method ? "method '" + s.entry + "' (" + manifest.path.string() +
                                              ") is not a method plugin: its manifest lacks \"provides\": \"method\""
                                        : "plugin '" + s.entry + "' (" + manifest.path.string() +
                                              ") is a method plugin: name it in train.json's \"method\", not in \"plugins\"");
    if (const auto why = HostPool::refusal(manifest, s.pool); !why.empty()) throw std::runtime_error(why);
    auto supervised = [&](Manifest host_manifest) {
      return std::make_unique<SupervisedPlugin>(
          std::move(host_manifest), s, impl->run, impl->runtime_dir,
          [impl](const std::string& name, const Json& request) {
            logger("plugins")->info("{} asks: {}", name, request.dump());
            std::lock_guard<std::mutex> lock(impl->mutex);
            impl->control.push_back({name, request});
          },
          [impl](const std::string& reason) {
            std::lock_guard<std::mutex> lock(impl->mutex);
            if (!impl->abort_reason) impl->abort_reason = reason;
          });
    };
    auto plugin = supervised(manifest);
    // By name: a state only ever goes back to the plugin that gave it.
    if (saved_states.contains(manifest.name)) plugin->restore_from(saved_states[manifest.name]);
    plugin->launch();
    std::vector<std::unique_ptr<SupervisedPlugin>> extra;
    for (int k = 2; k <= s.pool; ++k) {
      Manifest host_manifest = manifest;
      host_manifest.name = HostPool::host_name(manifest.name, k);
      extra.push_back(supervised(std::move(host_manifest)));
      extra.back()->launch();
    }
    if (!extra.empty()) impl->pools.emplace(plugin.get(), HostPool(std::move(extra)));
    impl->plugins.push_back(std::move(plugin));
  }
}

PluginRunner::~PluginRunner() {
  shutdown();
  if (!impl_->runtime_dir.empty()) {
    std::error_code ignored;
    fs::remove_all(impl_->runtime_dir, ignored);
  }
}

bool PluginRunner::empty() const { return impl_->plugins.empty(); }

bool PluginRunner::wants_tensors() const {
  for (const auto& p : impl_->plugins)
    if (p->manifest().wants_tensors) return true;
  return false;
}

bool PluginRunner::transforms_see_only_items() const {
  for (const auto& p : impl_->plugins) {
    bool transforms = false, observes = false;
    for (const auto& [hook, spec] : Schemas::instance().hook_catalogue()["hooks"].items())
      if (p->implements(hook)) (spec["kind"] == "transform" ? transforms : observes) = true;
    if (transforms && observes) return false;
  }
  return true;
}

std::vector<std::string> PluginRunner::names() const {
  std::vector<std::string> names;
  for (const auto& p : impl_->plugins) names.push_back(p->name());
  return names;
}

void PluginRunner::notify(const std::string& hook, const Json& kwargs) {
  impl_->check_params(hook, "notify", kwargs);
  for (auto& p : impl_->plugins)
    if (p->implements(hook)) p->send(hook, kwargs);
}

// A call hook goes to every plugin that implements it at once, each waited for on its own thread:
// the training loop waits for the slowest plugin, not for the sum of them. Each host is its own
// process, so nothing a plugin sees changes; only the order in which their control requests came
// could, and those are put back in config order, as the same replies one by one would have queued them.
void PluginRunner::call(const std::string& hook, const Json& kwargs) {
  impl_->check_params(hook, "call", kwargs);
  std::vector<SupervisedPlugin*> called;
  for (auto& p : impl_->plugins)
    if (p->implements(hook)) called.push_back(p.get());
  if (called.size() < 2) {
    for (auto* p : called) p->invoke(hook, kwargs);
    return;
  }
  std::size_t queued_before;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    queued_before = impl_->control.size();
  }
  std::vector<std::future<void>> others;
  for (std::size_t i = 1; i < called.size(); ++i)
    others.push_back(std::async(std::launch::async, [&hook, &kwargs, p = called[i]] { p->invoke(hook, kwargs); }));
  called[0]->invoke(hook, kwargs);
  for (auto& other : others) other.get();  // rethrows an abort
  impl_->put_in_config_order(queued_before);
}

std::optional<Json> PluginRunner::ask(const std::string& hook, const Json& kwargs) {
  impl_->check_params(hook, "call", kwargs);
  for (auto& p : impl_->plugins)
    if (p->implements(hook)) return p->invoke(hook, kwargs);
  return std::nullopt;
}

std::string PluginRunner::last_fault(const std::string& hook) const {
  for (const auto& p : impl_->plugins) {
    const Json hooks = p->report()["hooks"];
    if (hooks.contains(hook) && hooks[hook]["last_fault"].is_string()) return hooks[hook]["last_fault"];
  }
  return "";
}

std::vector<std::string> PluginRunner::transform_captions(std::vector<std::string> captions) {
  static const auto& hooks = TransformHooks::of("transform_caption");
  std::vector<Json> items(std::make_move_iterator(captions.begin()), std::make_move_iterator(captions.end()));
  items = impl_->transform(hooks, std::move(items));
  for (std::size_t i = 0; i < items.size(); ++i) captions[i] = std::move(items[i].get_ref<std::string&>());
  return captions;
}

std::vector<Image> PluginRunner::transform_pil_images(std::vector<Image> images) {
  static const auto& hooks = TransformHooks::of("transform_pil_image");
  // The images are copied into the messages; a failed one passes through as it was.
  std::vector<Json> items;
  items.reserve(images.size());
  for (const auto& image : images) items.push_back(wire::image_to_json(image));
  items = impl_->transform(hooks, std::move(items));
  for (std::size_t i = 0; i < items.size(); ++i) images[i] = wire::image_from_json(std::move(items[i]));
  return images;
}

std::string PluginRunner::transform_caption(std::string caption) {
  return std::move(transform_captions({std::move(caption)})[0]);
}

Image PluginRunner::transform_pil_image(Image image) { return std::move(transform_pil_images({std::move(image)})[0]); }

std::vector<std::pair<std::string, std::shared_ptr<ModelGate>>> PluginRunner::model_gates() const {
  std::vector<std::pair<std::string, std::shared_ptr<ModelGate>>> gates;
  for (const auto& p : impl_->plugins)
    if (p->model_gate()) gates.emplace_back(p->name(), p->model_gate());
  return gates;
}

bool PluginRunner::implements(const std::string& plugin, const std::string& hook) const {
  for (const auto& p : impl_->plugins)
    if (p->name() == plugin) return p->implements(hook);
  return false;
}

bool PluginRunner::has_manifest(const std::string& plugin) const {
  for (const auto& p : impl_->plugins)
    if (p->name() == plugin) return p->has_manifest();
  return false;
}

bool PluginRunner::welcomed(const std::string& plugin) const {
  for (const auto& p : impl_->plugins)
    if (p->name() == plugin) return p->protocol() > 0;
  return false;
}

std::optional<Json> PluginRunner::call_plugin(const std::string& plugin, const std::string& hook, const Json& kwargs) {
  impl_->check_params(hook, "call", kwargs);
  for (auto& p : impl_->plugins)
    if (p->name() == plugin && p->implements(hook)) return p->invoke(hook, kwargs);
  return std::nullopt;
}

void PluginRunner::notify_plugin(const std::string& plugin, const std::string& hook, const Json& kwargs) {
  impl_->check_params(hook, "notify", kwargs);
  for (auto& p : impl_->plugins)
    if (p->name() == plugin && p->implements(hook)) p->send(hook, kwargs);
}

bool PluginRunner::reload(const std::string& name, bool keep_state, std::int64_t global_step) {
  return impl_->for_each_host_of(name, [&](SupervisedPlugin& host) { host.reload(keep_state, global_step); });
}

bool PluginRunner::switch_off(const std::string& name, const std::string& why) {
  return impl_->for_each_host_of(name, [&](SupervisedPlugin& host) { host.switch_off(why); });
}

void PluginRunner::snapshot_states(std::int64_t global_step, const std::string& reason, bool wait) {
  const Json params = {{"global_step", global_step}, {"reason", reason}};
  impl_->check_params("get_state", "call", params);
  for (auto& p : impl_->plugins)
    if (p->keeps_state()) p->snapshot_state(params, wait);
}

namespace {

// What makes up a plugin on disk: its folder, its library when that lives elsewhere (a build
// folder), or, for an EveryDream2 class path, the plugins/ folder beside train.json.
std::vector<fs::path> plugin_files(const Manifest& manifest, const RunInfo& run) {
  std::vector<fs::path> files;
  if (manifest.runtime == kRemoteRuntime) return files;  // on another machine
  if (!manifest.dir.empty()) files.push_back(manifest.dir);
  else if (!run.config_dir.empty()) files.push_back(run.config_dir / "plugins");
  const fs::path entry = manifest.resolved_entry();
  std::error_code error;
  if (entry.is_absolute() && fs::is_regular_file(entry, error) &&
      (manifest.dir.empty() || entry.lexically_relative(manifest.dir).string().rfind("..", 0) == 0))
    files.push_back(entry);
  return files;
}

}  // namespace

void PluginRunner::watch_plugin_files() {
  std::map<std::string, std::vector<fs::path>> watched;
  for (const auto& p : impl_->plugins) {
    watched[p->name()] = plugin_files(p->manifest(), impl_->run);
    for (const auto& path : watched[p->name()]) logger("plugins")->info("watching {} for {}", path.string(), p->name());
  }
  impl_->watch = std::make_unique<FileWatch>(std::move(watched));
}

std::vector<std::string> PluginRunner::changed_plugins() {
  return impl_->watch ? impl_->watch->take_changed() : std::vector<std::string>{};
}

Json PluginRunner::saved_states() const {
  Json states = Json::object();
  for (const auto& p : impl_->plugins)
    if (auto snapshot = p->state_snapshot(); !snapshot.is_null()) states[p->name()] = snapshot;
  return states;
}

std::vector<ControlRequest> PluginRunner::take_control_requests() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return std::exchange(impl_->control, {});
}

std::optional<std::string> PluginRunner::abort_reason() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->abort_reason;
}

Json PluginRunner::report() const {
  Json plugins = Json::array();
  for (const auto* host : impl_->hosts()) plugins.push_back(host->report());
  return {{"jail", impl_->jail}, {"plugins", plugins}};
}

std::string PluginRunner::report_table() const {
  // The plugin column fits the longest name (an EveryDream2 class name runs long).
  std::size_t name_width = 22;
  for (const auto* host : impl_->hosts()) name_width = std::max(name_width, host->name().size() + 2);
  const int plugin_column = static_cast<int>(name_width);
  std::ostringstream out;
  out << std::left << std::setw(plugin_column) << "plugin" << std::setw(22) << "hook" << std::right << std::setw(8) << "calls"
      << std::setw(8) << "skipped" << std::setw(9) << "p50 ms" << std::setw(9) << "p99 ms" << std::setw(9) << "timeouts" << std::setw(8) << "crashes"
      << std::setw(8) << "invalid" << std::setw(7) << "errors" << std::setw(7) << "items" << "\n";
  auto number = [](const Json& value) {
    std::ostringstream text;
    if (value.is_null()) text << "-";
    else text << std::fixed << std::setprecision(2) << value.get<double>();
    return text.str();
  };
  for (const auto* host : impl_->hosts()) {
    Json r = host->report();
    for (const auto& [hook, c] : r["hooks"].items())
      out << std::left << std::setw(plugin_column) << r["name"].get<std::string>() << std::setw(22) << hook << std::right << std::setw(8)
          << c["calls"].get<long>() << std::setw(8) << c["skipped"].get<long>() << std::setw(9) << number(c["p50_ms"]) << std::setw(9) << number(c["p99_ms"])
          << std::setw(9) << c["timeouts"].get<long>() << std::setw(8) << c["crashes"].get<long>() << std::setw(8)
          << c["invalid_replies"].get<long>() << std::setw(7) << c["errors"].get<long>() << std::setw(7)
          << (c.contains("items") ? std::to_string(c["items"].get<long>()) : "-") << "\n";  // a batched hook's
    out << "  " << r["name"].get<std::string>() << ": " << r["restarts"].get<long>() << " restarts";
    if (r["reloads"].get<long>() > 0) out << ", " << r["reloads"].get<long>() << " restarted on request";
    if (r["quarantined"].get<bool>())
      out << (r["status"] == "stopped" ? ", STOPPED: " : ", QUARANTINED: ") << r["quarantine_reason"].get<std::string>();
    else if (r["last_fault"].is_string())
      out << ", last fault: " << r["last_fault"].get<std::string>();
    out << "\n";
  }
  if (impl_->jail.contains("warning")) out << "WARNING: " << impl_->jail["warning"].get<std::string>() << "\n";
  return out.str();
}

void PluginRunner::shutdown() {
  // Stop them side by side: each may take its grace period.
  std::vector<std::thread> stopping;
  for (auto* host : impl_->hosts()) stopping.emplace_back([host] { host->stop(); });
  for (auto& t : stopping) t.join();
}

}  // namespace bulkhead
