// `bulkhead plugins check` catches what training would: each wrong plugin fails with a message
// that names what was wrong and what was expected. Real plugins, through the real program.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <fstream>

#include "common/schemas.hpp"
#include "test_support.hpp"

namespace bulkhead {
namespace {

namespace fs = std::filesystem;

test::CommandResult check(const std::string& plugin) {
  return test::run((test::bin_dir() / "bulkhead").string() + " plugins check " + plugin);
}

// A raw-fault mode (tests/plugins/raw-fault/<mode>) must fail the check, saying `why`.
void expect_fails_with(const std::string& mode, const std::string& why) {
  auto result = check(test::test_plugin("raw-fault/" + mode).string());
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find(why), std::string::npos) << "expected: " << why << "\n" << result.output;
  EXPECT_NE(result.output.find("FAIL: raw-fault-" + mode + " does not conform"), std::string::npos) << result.output;
}

TEST(PluginsCommand, CheckPassesTheWellBehavedRawPlugin) {
  auto result = check(test::test_plugin("raw-fault").string());
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("PASS: raw-fault conforms"), std::string::npos) << result.output;
}

// Model access: checked in a jail granting what it asks, against a small model of the demo's shape.
TEST(PluginsCommand, CheckPassesTheTextualInversionPluginShowingItsModelAccess) {
  auto result = check("textual_inversion");
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("permissions: model caption.words.weight read, model caption.words.weight write"),
            std::string::npos)
      << result.output;
  for (const char* hook : {"on_model_load", "on_model_step", "on_model_save"})
    EXPECT_NE(result.output.find(std::string(hook) + std::string(24 - std::string(hook).size(), ' ') + "pass"),
              std::string::npos)
        << hook << "\n" << result.output;
  EXPECT_NE(result.output.find("PASS: textual_inversion conforms"), std::string::npos) << result.output;
}

// A model-access plugin whose update the trainer would refuse fails the check with the trainer's reason.
TEST(PluginsCommand, CheckFailsAModelUpdateTheTrainerWouldRefuse) {
  const fs::path dir = fs::temp_directory_path() / ("check-nan-" + std::to_string(getpid())) / "model-nan";
  fs::create_directories(dir);
  fs::copy_file(test::test_plugin("model-hostile") / "model_hostile.py", dir / "model_hostile.py",
                fs::copy_options::overwrite_existing);
  Json manifest = Json::parse(std::ifstream(test::test_plugin("model-hostile") / "plugin.json"));
  manifest["name"] = "model-nan";
  manifest["options"]["attack"] = "nan";
  std::ofstream(dir / "plugin.json") << manifest.dump();
  fs::permissions(dir.parent_path(), fs::perms::all);  // the plugin's user reads it (nobody, under root)
  fs::permissions(dir, fs::perms::all);
  auto result = check(dir.string());
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("on_model_step"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("update of caption.words.weight: row 0 holds NaN"), std::string::npos) << result.output;
  fs::remove_all(dir.parent_path());
}

TEST(PluginsCommand, CheckFailsAPluginThatExitsNonZeroOnShutdown) {
  expect_fails_with("exit-3", "FAIL shutdown: after the shutdown notification it ended with exit status 3, not exit status 0");
}

TEST(PluginsCommand, CheckFailsAWrongAnswerToAnUnknownMethod) {
  expect_fails_with("nil-unknown", "FAIL unknown method: a request for 'bulkhead_check_no_such_method' must be answered "
                                   "with the error code 'unknown_method' (docs/protocol.md 3.4); it got the result null");
}

// A plugin older than a hook cannot know to answer it nil: unknown_method is as good (issue 22).
TEST(PluginsCommand, CheckAcceptsUnknownMethodForAnUndeclaredCatalogueHook) {
  auto result = check(test::test_plugin("raw-fault/undeclared-unknown").string());
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("PASS: raw-fault-undeclared-unknown conforms"), std::string::npos) << result.output;
}

TEST(PluginsCommand, CheckFailsRejectedControlRequestsNamingThemAndWhy) {
  auto result = check(test::test_plugin("raw-fault/bad-control").string());
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("FAIL protocol: rejected control requests "
                               "[{\"action\":\"set_arg\",\"name\":\"learning_rate\",\"value\":\"fast\"}]: "),
            std::string::npos)
      << result.output;
}

TEST(PluginsCommand, CheckFailsAHookTypoInHelloWithASuggestion) {
  expect_fails_with("hello-typo", "FAIL hello: lists hook 'on_step_ned', which is not in schemas/hooks.json, so it is "
                                  "never called (did you mean 'on_step_end'?)");
  expect_fails_with("hello-typo", "FAIL manifest: declares hook 'on_step_end' but the plugin does not implement it");
}

TEST(PluginsCommand, CheckFailsAHookTypoInTheManifestWithASuggestion) {
  expect_fails_with("manifest-typo", "FAIL manifest: declares hook 'on_step_ned', which is not in schemas/hooks.json "
                                     "(did you mean 'on_step_end'?)");
  expect_fails_with("manifest-typo", "FAIL hello: lists hook 'on_step_end', which the manifest does not declare");
}

// A hello of the wrong shape is told at once, with the reason, not "no hello within 10 s".
TEST(PluginsCommand, CheckFailsAMisshapenHelloAtOnce) {
  for (const auto& [mode, why] : {std::pair<std::string, std::string>{"hello-notification", "hello came as a notification"},
                                  {"hello-short", "a request has 4 elements, this one has 3"}}) {
    const auto began = std::chrono::steady_clock::now();
    auto result = check(test::test_plugin("raw-fault/" + mode).string());
    EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(5)) << mode;
    EXPECT_EQ(result.status, 1) << result.output;
    EXPECT_NE(result.output.find("FAIL handshake: "), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("its hello is malformed: "), std::string::npos) << result.output;
    EXPECT_NE(result.output.find(why), std::string::npos) << result.output;
    EXPECT_EQ(result.output.find("no hello within"), std::string::npos) << result.output;
  }
}

TEST(PluginsCommand, CheckNamesTheAllowedRuntimesOfAMisspeltOne) {
  const fs::path dir = fs::temp_directory_path() / ("bulkhead-test-runtime-" + std::to_string(getpid()));
  fs::create_directories(dir / "typo");
  std::ofstream(dir / "typo" / "plugin.json")
      << Json{{"name", "typo"}, {"version", "1.0.0"}, {"description", "a misspelt runtime"}, {"runtime", "pyhton"},
              {"entry", "typo.Typo"}, {"hooks", Json::array()}}
             .dump();
  auto result = check((dir / "typo").string());
  EXPECT_EQ(result.status, 1) << result.output;
  EXPECT_NE(result.output.find("/runtime: Failed to match against any enum values. got \"pyhton\" (did you mean "
                               "'python'?); allowed: \"cpp\", \"python\", \"node\", \"exec\"."),
            std::string::npos)
      << result.output;
  fs::remove_all(dir);
}

// Every schema error says what type was expected and what came.
TEST(SchemaErrors, SayTheExpectedAndTheActualType) {
  const auto& schemas = Schemas::instance();
  auto text = [](const std::vector<SchemaError>& errors) {
    std::string all;
    for (const auto& error : errors) all += error.to_string() + "\n";
    return all;
  };
  const std::string caption = text(schemas.validate("hooks.json#/hooks/transform_caption/result", {{"caption", 42}}));
  EXPECT_NE(caption.find("/caption: Value type not permitted by 'type' constraint. expected string, got integer."),
            std::string::npos)
      << caption;
  const std::string observer = text(schemas.validate("hooks.json#/hooks/on_epoch_end/result", Json::array({1})));
  EXPECT_NE(observer.find("(document): Value type not permitted by 'type' constraint. expected "), std::string::npos) << observer;
  EXPECT_NE(observer.find(", got array."), std::string::npos) << observer;
  EXPECT_EQ(observer.find("another type"), std::string::npos) << observer;
  // Under alternatives too: set_arg's name and value, inside control.schema.json's oneOf.
  const std::string control = text(schemas.validate("protocol/control.schema.json",
                                                    Json::array({{{"action", "set_arg"}, {"name", "grad_acum"}, {"value", "4"}}})));
  EXPECT_NE(control.find("/0/name: Failed to match against any enum values. got \"grad_acum\" (did you mean 'grad_accum'?); "
                         "allowed: \"grad_accum\"."),
            std::string::npos)
      << control;
  EXPECT_NE(control.find("/0/value: Value type not permitted by 'type' constraint. expected integer, got string."),
            std::string::npos)
      << control;
}

}  // namespace
}  // namespace bulkhead
