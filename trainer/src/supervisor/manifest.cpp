#include "supervisor/manifest.hpp"

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>

#include "common/paths.hpp"
#include "common/schemas.hpp"

namespace bulkhead {
namespace fs = std::filesystem;

std::string Manifest::resolved_entry() const {
  if (runtime != "cpp") return entry;
  for (const auto& candidate : {dir / entry, paths::library_dir() / entry})
    if (fs::exists(candidate)) return fs::absolute(candidate).string();
  return (dir / entry).string();
}

Manifest load_manifest(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path.string() + ": cannot be read");
  Json json;
  try {
    json = Json::parse(in);
  } catch (const Json::parse_error& e) {
    throw std::runtime_error(path.string() + ": not valid JSON: " + e.what());
  }
  auto errors = Schemas::instance().validate("plugin.schema.json", json);
  if (!errors.empty()) {
    std::ostringstream message;
    message << path.string() << ": breaks plugin.schema.json:";
    for (const auto& error : errors) message << "\n  " << error.to_string();
    throw std::runtime_error(message.str());
  }
  Manifest m;
  m.name = json["name"];
  m.version = json["version"];
  m.description = json["description"];
  m.runtime = json["runtime"];
  m.entry = json["entry"];
  m.hooks = json["hooks"].get<std::vector<std::string>>();
  m.options = json.value("options", Json::object());
  m.resizes_images = json.value("resizes_images", false);
  m.wants_tensors = json.value("wants_tensors", false);
  m.provides = json.value("provides", "hooks");
  m.permissions = Permissions::from_json(json.value("permissions", Json::object()));
  m.path = fs::absolute(path);
  m.dir = m.path.parent_path();
  return m;
}

std::vector<fs::path> plugin_dirs_from_environment(const std::vector<fs::path>& extra) {
  std::vector<fs::path> dirs = extra;
  if (const char* env = std::getenv("BULKHEAD_PLUGINS_PATH")) {
    std::stringstream list(env);
    for (std::string dir; std::getline(list, dir, ':');)
      if (!dir.empty()) dirs.emplace_back(dir);
  }
  return dirs;
}

PluginCatalog::PluginCatalog(std::vector<fs::path> extra_dirs) {
  scan(paths::home() / "plugins");
  for (const auto& dir : extra_dirs) scan(dir);
}

void PluginCatalog::scan(const fs::path& dir) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    problems_.push_back({dir, "is not a folder"});
    return;
  }
  std::vector<fs::path> folders;
  for (const auto& item : fs::directory_iterator(dir, error))
    if (item.is_directory() && fs::exists(item.path() / "plugin.json")) folders.push_back(item.path());
  std::sort(folders.begin(), folders.end());
  for (const auto& folder : folders) {
    try {
      Manifest manifest = load_manifest(folder / "plugin.json");
      for (const auto& known : plugins_)
        if (known.name == manifest.name)
          conflicts_.push_back("two plugins are named '" + manifest.name + "': " + known.path.string() + " and " +
                               manifest.path.string());
      plugins_.push_back(std::move(manifest));
    } catch (const std::exception& e) {
      problems_.push_back({folder / "plugin.json", e.what()});
    }
  }
}

Manifest PluginCatalog::resolve(const std::string& entry, const fs::path& base_dir) const {
  for (const auto& base : {base_dir, fs::current_path()}) {
    if (base.empty()) continue;
    fs::path candidate = fs::path(entry).is_absolute() ? fs::path(entry) : base / entry;
    if (fs::is_directory(candidate) && fs::exists(candidate / "plugin.json")) return load_manifest(candidate / "plugin.json");
    if (fs::is_regular_file(candidate) && candidate.filename() == "plugin.json") return load_manifest(candidate);
  }
  for (const auto& conflict : conflicts_)
    if (conflict.find("'" + entry + "'") != std::string::npos) throw std::runtime_error(conflict);
  for (const auto& manifest : plugins_)
    if (manifest.name == entry) return manifest;

  // EveryDream2 names a Python class by module path; the Python host resolves and checks it.
  static const std::regex class_path(R"(^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$)");
  if (std::regex_match(entry, class_path)) {
    Manifest m;
    m.name = entry.substr(entry.rfind('.') + 1);
    m.version = "0.0.0";
    m.description = "EveryDream2 plugin " + entry;
    m.runtime = "python";
    m.entry = entry;
    return m;
  }
  std::string known;
  for (const auto& manifest : plugins_) known += (known.empty() ? "" : ", ") + manifest.name;
  throw std::runtime_error("plugin '" + entry + "' not found: it is not a plugin folder, a plugin.json, a known plugin (" +
                           known + ") or a Python class path like plugins.example_plugin.ExampleLoggingPlugin");
}

}  // namespace bulkhead
