#include "train/run_control.hpp"

#include <algorithm>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/atomic_file.hpp"

namespace bulkhead::run_control {
namespace fs = std::filesystem;
namespace {

// control/restart-NAME and control/stop-NAME act on a plugin; control/save and control/stop on
// the run (a plugin name cannot be empty, so "stop" is never a plugin's).
const std::string kRestart = "restart-";
const std::string kStopPlugin = "stop-";
const std::string kSave = "save";
const std::string kStopRun = "stop";
const std::string kAnswer = ".answer";
const std::string kFresh = "fresh";  // second line of a restart request: start the new host empty

fs::path control_dir(const fs::path& run_dir) { return run_dir / "control"; }

std::string file_name(const Request& request) {
  switch (request.action) {
    case Action::restart_plugin: return kRestart + request.plugin;
    case Action::stop_plugin: return kStopPlugin + request.plugin;
    case Action::save_checkpoint: return kSave;
    case Action::stop_run: return kStopRun;
  }
  return "";
}

bool names_plugin(Action action) { return action == Action::restart_plugin || action == Action::stop_plugin; }

// What a request file's name asks; nothing for a file that is no request (an answer, a .tmp).
std::optional<Request> parse(const fs::path& file) {
  const std::string name = file.filename().string();
  if (file.extension() == ".tmp" || file.extension() == kAnswer) return std::nullopt;
  if (name == kSave) return Request{Action::save_checkpoint};
  if (name == kStopRun) return Request{Action::stop_run};
  for (const auto& [prefix, action] : {std::pair{kRestart, Action::restart_plugin}, std::pair{kStopPlugin, Action::stop_plugin}})
    if (name.rfind(prefix, 0) == 0 && name.size() > prefix.size()) {
      std::ifstream in(file);
      std::string plugin, flag;
      std::getline(in, plugin);
      std::getline(in, flag);
      return Request{action, name.substr(prefix.size()), flag != kFresh};
    }
  return std::nullopt;
}

}  // namespace

std::optional<Action> action_named(const std::string& name) {
  for (Action action : {Action::restart_plugin, Action::stop_plugin, Action::save_checkpoint, Action::stop_run})
    if (name == action_name(action)) return action;
  return std::nullopt;
}

const char* action_name(Action action) {
  switch (action) {
    case Action::restart_plugin: return "restart_plugin";
    case Action::stop_plugin: return "stop_plugin";
    case Action::save_checkpoint: return "save_checkpoint";
    case Action::stop_run: return "stop_run";
  }
  return "";
}

void post(const fs::path& run_dir, const Request& request) {
  // Manifest names, and the class names of EveryDream2 entries.
  static const std::regex name(R"(^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$)");
  if (names_plugin(request.action) && !std::regex_match(request.plugin, name))
    throw std::runtime_error("'" + request.plugin + "' is not a plugin name");
  if (!fs::exists(run_dir / "config.json"))
    throw std::runtime_error(run_dir.string() + " is not a run folder (it has no config.json)");
  fs::create_directories(control_dir(run_dir));
  const fs::path file = control_dir(run_dir) / file_name(request);
  fs::remove(file.string() + kAnswer);
  std::string text = request.plugin;
  if (request.action == Action::restart_plugin && !request.keep_state) text += "\n" + kFresh;
  write_file_atomically(file, text + "\n");
}

std::optional<Answer> await_answer(const fs::path& run_dir, const Request& request, std::chrono::milliseconds timeout) {
  const fs::path file = control_dir(run_dir) / (file_name(request) + kAnswer);
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!fs::exists(file)) {
    if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::ifstream in(file);
  const auto json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  fs::remove(file);
  if (!json.is_object()) return Answer{false, "the trainer's answer in " + file.string() + " is not JSON"};
  return Answer{json.value("ok", false), json.value("message", "")};
}

std::vector<Request> take(const fs::path& run_dir) {
  std::vector<fs::path> files;
  std::error_code missing;
  for (const auto& entry : fs::directory_iterator(control_dir(run_dir), missing)) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::vector<Request> requests;
  for (const auto& file : files)
    if (auto request = parse(file)) {
      requests.push_back(*request);
      fs::remove(file);
    }
  return requests;
}

void answer(const fs::path& run_dir, const Request& request, const Answer& answer) {
  const nlohmann::json json = {{"ok", answer.ok}, {"message", answer.message}};
  write_file_atomically(control_dir(run_dir) / (file_name(request) + kAnswer), json.dump() + "\n");
}

}  // namespace bulkhead::run_control
