#include "plugins/restart_request.hpp"

#include <fstream>
#include <regex>
#include <stdexcept>
#include <thread>

namespace bulkhead::restart_request {
namespace fs = std::filesystem;
namespace {

const std::string kPrefix = "restart-";
const std::string kAnswer = ".answer";

fs::path control_dir(const fs::path& run_dir) { return run_dir / "control"; }

// Written under a temporary name and renamed, so the reader never sees half a file.
void write_atomically(const fs::path& file, const std::string& text) {
  const fs::path temporary = file.string() + ".tmp";
  std::ofstream(temporary) << text << "\n";
  fs::rename(temporary, file);
}

const std::string kFresh = "fresh";  // second line of a request: start the new host empty

}  // namespace

void post(const fs::path& run_dir, const std::string& plugin, bool keep_state) {
  // Manifest names, and the class names of EveryDream2 entries.
  static const std::regex name(R"(^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$)");
  if (!std::regex_match(plugin, name)) throw std::runtime_error("'" + plugin + "' is not a plugin name");
  if (!fs::exists(run_dir / "config.json"))
    throw std::runtime_error(run_dir.string() + " is not a run folder (it has no config.json)");
  fs::create_directories(control_dir(run_dir));
  fs::remove(control_dir(run_dir) / (kPrefix + plugin + kAnswer));
  write_atomically(control_dir(run_dir) / (kPrefix + plugin), keep_state ? plugin : plugin + "\n" + kFresh);
}

std::optional<std::string> await_answer(const fs::path& run_dir, const std::string& plugin,
                                        std::chrono::milliseconds timeout) {
  const fs::path file = control_dir(run_dir) / (kPrefix + plugin + kAnswer);
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!fs::exists(file)) {
    if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::ifstream in(file);
  std::string message;
  std::getline(in, message);
  fs::remove(file);
  return message;
}

std::vector<Request> take(const fs::path& run_dir) {
  std::vector<Request> requests;
  std::error_code missing;
  for (const auto& entry : fs::directory_iterator(control_dir(run_dir), missing)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind(kPrefix, 0) != 0 || entry.path().extension() == ".tmp" || entry.path().extension() == kAnswer) continue;
    std::ifstream in(entry.path());
    std::string name, flag;
    std::getline(in, name);
    std::getline(in, flag);
    requests.push_back({file.substr(kPrefix.size()), flag != kFresh});
    fs::remove(entry.path());
  }
  return requests;
}

void answer(const fs::path& run_dir, const std::string& plugin, const std::string& message) {
  write_atomically(control_dir(run_dir) / (kPrefix + plugin + kAnswer), message);
}

}  // namespace bulkhead::restart_request
