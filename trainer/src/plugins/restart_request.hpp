// restart_request.hpp — asking a running training to restart one plugin, say after fixing its code.
//
//   bulkhead plugins restart NAME --run RUN_DIR [--fresh]
//     posts RUN_DIR/control/restart-NAME and waits for the trainer's answer;
//   the trainer, between steps, takes the request, restarts the plugin's host (new code, fresh
//   process, faults forgiven, quarantine lifted; with the old host's state unless --fresh) and
//   answers in RUN_DIR/control/restart-NAME.answer.
//
// Files in the run folder, because the trainer already owns that folder, they need no open port,
// and a request posted while the trainer is between runs waits for a resume.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace bulkhead::restart_request {

// Throws std::runtime_error when run_dir is not a run folder or the name cannot be a plugin's.
void post(const std::filesystem::path& run_dir, const std::string& plugin, bool keep_state = true);
// The trainer's answer ("restarted ..." or why not), once it comes; removes it.
std::optional<std::string> await_answer(const std::filesystem::path& run_dir, const std::string& plugin,
                                        std::chrono::milliseconds timeout);

struct Request {
  std::string plugin;
  bool keep_state = true;  // false: --fresh, the new host starts empty
};

// The trainer's side: the restarts asked for since the last call (the requests are removed).
std::vector<Request> take(const std::filesystem::path& run_dir);
void answer(const std::filesystem::path& run_dir, const std::string& plugin, const std::string& message);

}  // namespace bulkhead::restart_request
