#include "supervisor/plugin_settings.hpp"

#include <fstream>
#include <stdexcept>

#include "common/schemas.hpp"

namespace bulkhead {
namespace {

// The object form of plugin-entry.schema.json: the one that has properties, and their defaults.
const Json& entry_schema() {
  static const Json schema = [] {
    const auto path = Schemas::instance().dir() / "plugin-entry.schema.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    const Json whole = Json::parse(in);
    for (const auto& form : whole.at("oneOf"))
      if (form.contains("properties")) return form;
    throw std::runtime_error(path.string() + " has no object form");
  }();
  return schema;
}

PluginLimits limits_from(const Json& l) {
  PluginLimits limits;
  limits.address_space_mb = l.at("address_space_mb");
  limits.memory_mb = l.at("memory_mb");
  limits.cpu_time_s = l.at("cpu_time_s");
  limits.open_files = l.at("open_files");
  limits.processes = l.at("processes");
  limits.tmp_mb = l.at("tmp_mb");
  limits.scratch_mb = l.at("scratch_mb");
  limits.max_message_mb = l.at("max_message_mb");
  limits.max_state_mb = l.at("max_state_mb");
  limits.max_caption_bytes = l.at("max_caption_bytes");
  limits.max_update_norm = l.at("max_update_norm");
  limits.max_update_staleness_steps = l.at("max_update_staleness_steps");
  limits.model_region_slots = l.at("model_region_slots");
  limits.model_region_slot_mb = l.at("model_region_slot_mb");
  limits.image_region_slots = l.at("image_region_slots");
  limits.image_region_slot_mb = l.at("image_region_slot_mb");
  return limits;
}

// Keys are required unless the entry says "insecure"; they are read when the plugin starts.
RemoteSettings remote_from(const Json& item) {
  RemoteSettings remote{item.at("remote"), item.value("server_key", ""), item.value("client_key", ""), item.at("insecure")};
  const std::string name = item.at("name");
  if (!remote.insecure && (remote.server_key.empty() || remote.client_key.empty()))
    throw std::runtime_error("plugin '" + name + "' is remote (" + remote.endpoint + ") but its entry lacks " +
                             (remote.server_key.empty() ? "\"server_key\" (the server's .pub file)" : "\"client_key\" (this trainer's .key file)") +
                             ": make keys with 'bulkhead host keys', or set \"insecure\": true for plain TCP (docs/protocol.md, Remote hosts)");
  if (remote.insecure && (!remote.server_key.empty() || !remote.client_key.empty()))
    throw std::runtime_error("plugin '" + name + "' is \"insecure\" and names keys: an insecure link uses none, so drop one or the other");
  return remote;
}

}  // namespace

PluginSettings plugin_settings_from_entry(const Json& entry) {
  const Json given = entry.is_string() ? Json{{"name", entry}} : entry;
  Json item = given;
  if (!item.contains("limits")) item["limits"] = Json::object();
  fill_defaults(item, entry_schema());
  PluginSettings s;
  s.entry = item.at("name");
  s.options = item.value("options", Json::object());
  // Not the schema's default "skip": unset, each hook keeps its own on_failure from hooks.json.
  if (given.contains("on_failure")) s.abort_on_failure = given["on_failure"] == "abort";
  if (item.contains("timeout_ms")) s.timeout_ms = item["timeout_ms"].get<int>();
  s.max_restarts = item.at("max_restarts");
  s.restart_window_s = item.at("restart_window_s");
  s.restart_backoff_ms = item.at("restart_backoff_ms");
  s.keep_state = item.at("keep_state");
  s.pool = item.at("pool");
  s.grant = item.value("grant", Json::object());
  s.limits = limits_from(item.at("limits"));
  if (item.contains("remote")) s.remote = remote_from(item);
  return s;
}

std::vector<PluginSettings> plugin_settings_from_config(const Json& plugins) {
  std::vector<PluginSettings> settings;
  if (!plugins.is_array()) return settings;
  for (const auto& entry : plugins) settings.push_back(plugin_settings_from_entry(entry));
  return settings;
}

}  // namespace bulkhead
