// run_control.hpp — asking a running training to act: restart or stop one plugin, save a
// checkpoint now, stop the run. The one path behind the CLI and the web view.
//
//   bulkhead plugins restart NAME --run RUN_DIR [--fresh]    posts RUN_DIR/control/restart-NAME
//   bulkhead plugins stop NAME --run RUN_DIR                 posts RUN_DIR/control/stop-NAME
//   bulkhead run save --run RUN_DIR                          posts RUN_DIR/control/save
//   bulkhead run stop --run RUN_DIR                          posts RUN_DIR/control/stop
//
// and waits for the trainer's answer in the same name plus ".answer". The trainer takes requests
// between steps (Trainer::handle_control_requests): a restart gives the plugin a fresh host (new
// code, faults forgiven, quarantine lifted; with the old host's state unless --fresh), a stopped
// plugin is off for the rest of the run as if quarantined, a save is a "requested" checkpoint at
// the next optimizer step, a stop ends the run there like a plugin's stop request.
//
// Files in the run folder, because the trainer already owns that folder, they need no open port,
// whoever may write the folder may steer the run and nobody else, and a request posted while the
// trainer is between runs waits for a resume.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace bulkhead::run_control {

enum class Action { restart_plugin, stop_plugin, save_checkpoint, stop_run };

struct Request {
  explicit Request(Action action, std::string plugin = "", bool keep_state = true)
      : action(action), plugin(std::move(plugin)), keep_state(keep_state) {}

  Action action;
  std::string plugin;  // restart_plugin and stop_plugin
  bool keep_state;     // restart_plugin: false is --fresh, the new host starts empty
};

struct Answer {
  bool ok = false;      // done (or accepted, for a save and a stop); false: refused, and why
  std::string message;  // "restarted caption_case_js at step 120", "no plugin named ..."
};

// "restart_plugin", ...: the names the web API uses; nothing for an unknown one.
std::optional<Action> action_named(const std::string& name);
const char* action_name(Action action);

// Throws std::runtime_error when run_dir is not a run folder or the name cannot be a plugin's.
void post(const std::filesystem::path& run_dir, const Request& request);
// The trainer's answer, once it comes within timeout; removes it.
std::optional<Answer> await_answer(const std::filesystem::path& run_dir, const Request& request,
                                   std::chrono::milliseconds timeout);

// The trainer's side: the requests posted since the last call, in file-name order (they are removed).
std::vector<Request> take(const std::filesystem::path& run_dir);
void answer(const std::filesystem::path& run_dir, const Request& request, const Answer& answer);

}  // namespace bulkhead::run_control
