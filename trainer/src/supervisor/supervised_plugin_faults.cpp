// supervised_plugin_faults.cpp — the fault policy applied: a fault counted in the window, the host
// killed for a restart, quarantine, and the abort of an on_failure: abort plugin.
#include "supervisor/supervised_plugin_parts.hpp"

namespace bulkhead {
using namespace supervised_parts;

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

}  // namespace bulkhead
