// supervised_plugin_state.cpp — the plugin's state (docs/protocol.md, section 10): snapshots asked
// for with get_state, the latest good one kept, handed to each new host with set_state.
#include "supervisor/supervised_plugin_parts.hpp"

#include <algorithm>

namespace bulkhead {
using namespace supervised_parts;

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

}  // namespace bulkhead
