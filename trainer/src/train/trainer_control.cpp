// trainer_control.cpp — control requests in: the plugins', the hook observer's and the user's
// (RUN_DIR/control: bulkhead plugins restart|stop, run save|stop), validated, logged and applied.
#include "train/trainer_parts.hpp"

#include <fmt/ranges.h>

#include "common/schemas.hpp"
#include "supervisor/plugin_runner.hpp"

namespace bulkhead {

namespace {

// Who asked, in the log and in a requested checkpoint's record: never a plugin's name (it has a
// space), so no plugin may delete the checkpoints the user asked for.
const std::string kUserSource = "the user";

}  // namespace

void Trainer::handle_control_requests() {
  if (!leader()) {
    for (auto& request : plugins_->take_control_requests())
      log_->warn("{} asked {} on rank {}: control is rank 0's (its plugins' requests), so this one is not applied",
                 request.plugin, request.request.dump(), ranks_->rank());
    for (const auto& plugin : plugins_->changed_plugins()) plugins_->reload(plugin, true, position_.global_step);
    return;
  }
  write_live_report(false);
  for (auto& request : plugins_->take_control_requests()) apply_control(request.plugin, request.request);
  for (auto& [source, request] : std::exchange(observer_requests_, {})) apply_control(source, request);
  for (const auto& request : run_control::take(run_dir_)) run_control::answer(run_dir_, request, apply_user_request(request));
  for (const auto& plugin : plugins_->changed_plugins()) {
    log_->warn("{}: its files changed: restarting it with its state (--watch-plugins)", plugin);
    plugins_->reload(plugin, true, position_.global_step);
  }
}

// What `bulkhead plugins restart|stop` and `bulkhead run save|stop` (and the web view) asked, in
// RUN_DIR/control. A save and a stop go the way a plugin's control requests go.
run_control::Answer Trainer::apply_user_request(const run_control::Request& request) {
  using run_control::Action;
  const std::string step = " at step " + std::to_string(position_.global_step);
  switch (request.action) {
    case Action::save_checkpoint:
      apply_control(kUserSource, {{"action", "save_checkpoint"}, {"reason", "asked in " + (run_dir_ / "control").string()}});
      return {true, "a checkpoint will be saved at the next optimizer step (asked" + step + ")"};
    case Action::stop_run:
      apply_control(kUserSource, {{"action", "stop"}, {"reason", "asked in " + (run_dir_ / "control").string()}});
      return {true, "training stops at the next optimizer step (asked" + step + "), then saves its final checkpoint"};
    case Action::restart_plugin:
    case Action::stop_plugin:
      break;
  }
  const std::string& plugin = request.plugin;
  const bool restart = request.action == Action::restart_plugin;
  const bool known = restart ? plugins_->reload(plugin, request.keep_state, position_.global_step)
                             : plugins_->switch_off(plugin, "stopped by the user" + step);
  if (known && ranks_) decision_[restart ? "reload" : "switch_off"].push_back(
      restart ? Json{{"plugin", plugin}, {"keep_state", request.keep_state}} : Json(plugin));
  if (known)
    return {true, restart ? "restarted " + plugin + step + (request.keep_state ? "" : ", without its state")
                          : "stopped " + plugin + step + ": it is off for the rest of this run (restart turns it back on)"};
  const std::string names = fmt::format("{}", fmt::join(plugins_->names(), ", "));
  log_->warn("{} asked for an unknown plugin '{}' (plugins: {})", restart ? "restart" : "stop", plugin, names);
  return {false, "no plugin named " + plugin + " in this run (plugins: " + names + ")"};
}

void Trainer::apply_control(const std::string& source, const Json& request) {
  auto errors = Schemas::instance().validate("protocol/control.schema.json", Json::array({request}));
  if (!errors.empty()) {
    log_->warn("control request from {} rejected: {} ({})", source, request.dump(), errors.front().to_string());
    return;
  }
  const std::string action = request.at("action");
  const std::string reason = request.value("reason", "");
  if (action == "stop") {
    stop_requested_ = true;
    if (ranks_) decision_["stop"] = true;
    log_->warn("{} asked to stop training{}", source, reason.empty() ? "" : ": " + reason);
  } else if (action == "save_checkpoint") {
    checkpoint_requests_.emplace_back(source, request.value("tag", ""));
    log_->info("{} asked for a checkpoint{}", source, reason.empty() ? "" : ": " + reason);
  } else if (action == "delete_checkpoint") {
    delete_requested_checkpoint(source, request);
  } else if (action == "set_arg" && request.at("name") != "grad_accum") {
    // The schema's whitelist may grow before the trainer learns the new name: refuse, never guess.
    log_->warn("{} asked to set {}, which this trainer cannot change", source, request.at("name").get<std::string>());
  } else if (action == "set_arg") {
    // grad_accum changes at the next epoch boundary.
    position_.next_grad_accum = request.at("value");
    if (ranks_) decision_["next_grad_accum"] = position_.next_grad_accum;
    // Between epochs (on_epoch_end) position_.epoch is already the next one; within one, it is the current one.
    const int next_epoch = position_.batches_done == 0 ? position_.epoch : position_.epoch + 1;
    log_->info("{} set grad_accum to {} from epoch {}", source, position_.next_grad_accum, next_epoch + 1);
  }
}

void Trainer::check_abort() {
  if (auto reason = plugins_->abort_reason()) throw TrainingAborted("plugin failure: " + *reason);
}

}  // namespace bulkhead
