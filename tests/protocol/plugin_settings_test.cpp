// Plugin settings: defaults from plugin-entry.schema.json, and the code's defaults equal to them.
#include <gtest/gtest.h>

#include "supervisor/plugin_settings.hpp"

namespace bulkhead {
namespace {

// Every field, so that a comparison names the one that differs.
Json fields(const PluginSettings& s) {
  const auto& l = s.limits;
  return {{"entry", s.entry},
          {"options", s.options},
          {"abort_on_failure", s.abort_on_failure ? Json(*s.abort_on_failure) : Json()},
          {"timeout_ms", s.timeout_ms ? Json(*s.timeout_ms) : Json()},
          {"max_restarts", s.max_restarts},
          {"restart_window_s", s.restart_window_s},
          {"restart_backoff_ms", s.restart_backoff_ms},
          {"keep_state", s.keep_state},
          {"pool", s.pool},
          {"grant", s.grant},
          {"method", s.method},
          {"limits",
           {{"address_space_mb", l.address_space_mb}, {"memory_mb", l.memory_mb}, {"cpu_time_s", l.cpu_time_s},
            {"open_files", l.open_files}, {"processes", l.processes}, {"tmp_mb", l.tmp_mb}, {"scratch_mb", l.scratch_mb},
            {"max_message_mb", l.max_message_mb}, {"max_state_mb", l.max_state_mb},
            {"max_caption_bytes", l.max_caption_bytes}, {"max_update_norm", l.max_update_norm},
            {"max_update_staleness_steps", l.max_update_staleness_steps},
            {"model_region_slots", l.model_region_slots}, {"model_region_slot_mb", l.model_region_slot_mb},
            {"image_region_slots", l.image_region_slots}, {"image_region_slot_mb", l.image_region_slot_mb}}}};
}

TEST(PluginSettings, CodeDefaultsAreTheSchemasDefaults) {
  PluginSettings in_code;
  in_code.entry = "shout";
  EXPECT_EQ(fields(plugin_settings_from_entry("shout")), fields(in_code));
  EXPECT_EQ(fields(plugin_settings_from_entry(Json{{"name", "shout"}})), fields(in_code));
  EXPECT_EQ(fields(plugin_settings_from_entry(Json{{"name", "shout"}, {"limits", Json::object()}})), fields(in_code));
}

TEST(PluginSettings, GivenValuesWinOverDefaults) {
  const auto s = plugin_settings_from_entry(
      {{"name", "shout"}, {"on_failure", "abort"}, {"timeout_ms", 50}, {"max_restarts", 1}, {"restart_window_s", 2.5},
       {"restart_backoff_ms", 0}, {"keep_state", false}, {"pool", 3}, {"options", {{"x", 1}}}, {"grant", {{"network", true}}},
       {"limits", {{"memory_mb", 100}, {"max_update_norm", 0.5}}}});
  EXPECT_EQ(s.abort_on_failure, true);
  EXPECT_EQ(s.timeout_ms, 50);
  EXPECT_EQ(s.max_restarts, 1);
  EXPECT_EQ(s.restart_window_s, 2.5);
  EXPECT_EQ(s.restart_backoff_ms, 0);
  EXPECT_FALSE(s.keep_state);
  EXPECT_EQ(s.pool, 3);
  EXPECT_EQ(s.options, (Json{{"x", 1}}));
  EXPECT_EQ(s.grant, (Json{{"network", true}}));
  EXPECT_EQ(s.limits.memory_mb, 100);
  EXPECT_EQ(s.limits.max_update_norm, 0.5);
  EXPECT_EQ(s.limits.open_files, PluginLimits().open_files);
}

// The schema's on_failure default ("skip") is not filled in: unset, each hook keeps its own.
TEST(PluginSettings, OnFailureUnsetLeavesEachHooksOwn) {
  EXPECT_FALSE(plugin_settings_from_entry("shout").abort_on_failure.has_value());
  EXPECT_EQ(plugin_settings_from_entry(Json{{"name", "shout"}, {"on_failure", "skip"}}).abort_on_failure, false);
}

TEST(PluginSettings, ConfigListIsParsedEntryByEntry) {
  const auto settings = plugin_settings_from_config(Json::array({"a", {{"name", "b"}, {"max_restarts", 2}}}));
  ASSERT_EQ(settings.size(), 2u);
  EXPECT_EQ(settings[0].entry, "a");
  EXPECT_EQ(settings[1].entry, "b");
  EXPECT_EQ(settings[1].max_restarts, 2);
  EXPECT_TRUE(plugin_settings_from_config(Json()).empty());
}

}  // namespace
}  // namespace bulkhead
