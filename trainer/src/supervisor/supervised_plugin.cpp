// supervised_plugin.cpp — a SupervisedPlugin made from its manifest and train.json entry: its grant,
// its regions, where it writes, how long its hooks may take and whether a fault aborts the run.
// Its other jobs are in supervised_plugin_*.cpp (docs/supervision.md, "Files").
#include "supervisor/supervised_plugin_parts.hpp"

#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.hpp"
#include "remote/remote_host.hpp"

namespace bulkhead {
using namespace supervised_parts;

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

}  // namespace bulkhead
