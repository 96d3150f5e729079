// The C++ SDK's hook list and protocol version, held together with schemas/hooks.json.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include <bulkhead/plugin.hpp>
#include <bulkhead/wire.hpp>

#include "common/schemas.hpp"

namespace bulkhead {
namespace {

// The catalogue's hook names in the file's order (Json sorts an object's keys; ordered_json keeps them).
std::vector<std::string> catalogue_hooks_in_file_order() {
  std::ifstream in(Schemas::instance().dir() / "hooks.json");
  std::vector<std::string> names;
  const auto catalogue = nlohmann::ordered_json::parse(in);
  for (const auto& [name, hook] : catalogue.at("hooks").items()) names.push_back(name);
  return names;
}

TEST(Catalogue, CppSdkKnowsExactlyTheCatalogueHooksInItsOrder) {
  EXPECT_EQ(known_hooks(), catalogue_hooks_in_file_order());
}

TEST(Catalogue, CppProtocolVersionsAreTheCatalogues) {
  EXPECT_EQ(wire::kProtocolVersion, Schemas::instance().hook_catalogue().at("protocol_version").get<int>());
  EXPECT_EQ(wire::kOldestProtocolVersion, Schemas::instance().hook_catalogue().at("oldest_protocol_version").get<int>());
}

// One hook of each kind overridden: the export lists just those, in the catalogue's order.
struct SomeHooks : Plugin {
  Json on_model_step(const Kwargs&) override { return nullptr; }
  std::string transform_caption(const std::string& caption) override { return caption; }
  Json describe_method(const Kwargs&) override { return Json::object(); }
  Json get_state() override { return nullptr; }
  void on_step_end(const Kwargs&) override {}
};

TEST(Catalogue, ExportListsTheOverriddenHooks) {
  // transform_captions too: the default batched method loops over the overridden transform_caption.
  EXPECT_EQ(detail::overridden_hooks<SomeHooks>(),
            (std::vector<std::string>{"on_step_end", "get_state", "transform_caption", "transform_captions",
                                      "describe_method", "on_model_step"}));
  EXPECT_TRUE(detail::overridden_hooks<Plugin>().empty());
}

// A class that works on whole batches: its batched hook once, no per-item hook.
struct WholeBatches : Plugin {
  std::vector<Image> transform_pil_images(std::vector<Image> images) override { return images; }
};

TEST(Catalogue, ABatchedOverrideIsListedOnce) {
  EXPECT_EQ(detail::overridden_hooks<WholeBatches>(), (std::vector<std::string>{"transform_pil_images"}));
}

TEST(Catalogue, CppBatchedHooksAreTheCataloguesBatchOf) {
  std::map<std::string, std::string> sdk, catalogue;
#define BULKHEAD_TEST_PAIR(batch, item) sdk[#batch] = #item;
  BULKHEAD_BATCHED_HOOKS(BULKHEAD_TEST_PAIR)
#undef BULKHEAD_TEST_PAIR
  for (const auto& [name, hook] : Schemas::instance().hook_catalogue().at("hooks").items())
    if (hook.contains("batch_of")) catalogue[name] = hook["batch_of"];
  EXPECT_EQ(sdk, catalogue);
}

}  // namespace
}  // namespace bulkhead
