// supervised_plugin_report.cpp — what plugin-report.json holds of the plugin.
#include "supervisor/supervised_plugin_parts.hpp"

namespace bulkhead {

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
