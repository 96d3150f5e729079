#include "study/method_plugin.hpp"

#include <stdexcept>
#include <vector>

#include <fmt/format.h>

namespace bulkhead {
namespace fs = std::filesystem;
namespace {

// The method plugin's entry in train.json, as a plugin entry the runner starts.
PluginSettings method_settings(const Json& method) {
  PluginSettings s = plugin_settings_from_entry(method);
  s.method = true;
  return s;
}

}  // namespace

MethodPlugin::MethodPlugin(const Json& user, const TrainConfig& base, const fs::path& dir,
                           const StudyRequest& request) {
  const Json& entry = user.at("method");
  name_ = entry.at("name");
  RunInfo run;  // scratch: <study>/plugin-scratch/<name>, for the whole study
  run.project_name = base.project_name;
  run.run_dir = dir;
  run.config_dir = base.source_dir;
  if (!base.python.empty()) run.python = base.from_config(base.python);
  run.jail = JailSettings::from_json(base.json.at("jail"));
  run.config_file = request.source;
  try {
    runner_ = std::make_unique<PluginRunner>(std::vector<PluginSettings>{method_settings(entry)}, run);
  } catch (const std::runtime_error& e) {  // not found, not a method, failed to load: nothing to study with
    throw ConfigError(fmt::format("{}: method: {}", request.source, e.what()));
  }
  Json reply = ask_or_fail("describe_method", {{"project_name", base.project_name}, {"tunable", tunable_keys()}});
  spec_ = parse_method(reply, "method '" + name_ + "'", request.user, request.source, request.source_dir);
  if (entry.contains("keep")) spec_.keep = entry["keep"];
}

Json MethodPlugin::ask_or_fail(const std::string& hook, const Json& kwargs) {
  auto reply = runner_->ask(hook, kwargs);
  if (reply && !reply->is_null()) return *reply;
  std::string why = reply ? "it answered nil: the plugin does not implement it" : runner_->last_fault(hook);
  if (why.empty()) why = "the plugin does not implement it (its hello does not list it)";
  throw ConfigError(fmt::format("method '{}': {}: {}", name_, hook, why));
}

}  // namespace bulkhead
