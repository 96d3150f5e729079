// supervised_plugin_control.cpp — what the plugin asks of the run (control requests, checked against
// protocol/control.schema.json), and what it sends that the protocol does not allow.
#include "supervisor/supervised_plugin_parts.hpp"

namespace bulkhead {

void SupervisedPlugin::handle_control(const Json& requests) {
  auto errors = Schemas::instance().validate("protocol/control.schema.json", requests);
  if (!errors.empty()) {
    protocol_problem("rejected control requests " + requests.dump() + ": " + join_errors(errors));
    return;
  }
  for (const auto& request : requests) control_(manifest_.name, request);
}

void SupervisedPlugin::protocol_problem(const std::string& what) {
  log_->warn("{}: {}", manifest_.name, what);
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.protocol_problem(what);
}

std::vector<std::string> SupervisedPlugin::protocol_problems() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return counters_.protocol_problems();
}

}  // namespace bulkhead
