#include "plugins/checker.hpp"

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <unistd.h>

#include <bulkhead/wire.hpp>

#include "common/schemas.hpp"
#include "plugins/supervised_plugin.hpp"

namespace bulkhead {
namespace {

constexpr int kRounds = 5;  // calls per hook: enough for a latency figure

Json resolve_ref(const std::string& ref) {
  const auto& schemas = Schemas::instance();
  if (ref.rfind("#/definitions/", 0) == 0) return schemas.hook_catalogue()["definitions"][ref.substr(14)];
  std::ifstream in(schemas.dir() / ref.substr(0, ref.find('#')));
  return Json::parse(in);
}

Json example_image() {
  Image image{64, 48, "RGB", {}};
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      for (int c = 0; c < 3; ++c) image.data.push_back(std::uint8_t((x * 4 + y * 2 + c * 60) % 256));
  return wire::image_to_json(image);
}

}  // namespace

Json example_for_schema(const Json& schema) {
  if (schema.contains("$ref")) {
    const std::string ref = schema["$ref"];
    if (ref.find("image.schema.json") != std::string::npos) return example_image();
    return example_for_schema(resolve_ref(ref));
  }
  if (schema.contains("enum")) return schema["enum"][0];
  if (schema.contains("const")) return schema["const"];
  const std::string type = schema.value("type", "object");
  if (type == "integer") return 3;
  if (type == "number") return 0.25;
  if (type == "string") return "a red circle on a white background";
  if (type == "boolean") return true;
  if (type == "array") return Json::array({example_for_schema(schema.value("items", Json::object()))});
  Json object = Json::object();
  for (const auto& name : schema.value("required", Json::array()))
    object[name.get<std::string>()] = example_for_schema(schema["properties"][name.get<std::string>()]);
  return object;
}

bool check_plugin(const std::string& entry, const PluginCatalog& catalog, std::ostream& out) {
  Manifest manifest = catalog.resolve(entry);
  PluginSettings settings;
  settings.entry = entry;
  settings.max_restarts = 1000;  // the checker reports every fault; it never quarantines
  settings.grant = manifest.permissions.to_json();  // checked in the jail it asks for
  RunInfo run;
  run.project_name = "plugins-check";
  run.scratch_dir = std::filesystem::temp_directory_path() / ("bulkhead-check-" + std::to_string(getpid()));
  std::filesystem::create_directories(run.scratch_dir);
  std::string runtime_pattern = (std::filesystem::temp_directory_path() / "bulkhead-XXXXXX").string();
  mkdtemp(runtime_pattern.data());
  run.run_dir = run.scratch_dir;

  bool passed = true;
  std::vector<ControlRequest> control;
  {
    SupervisedPlugin plugin(
        manifest, settings, run, runtime_pattern, [&](const std::string& name, const Json& r) { control.push_back({name, r}); },
        [](const std::string&) {});
    try {
      plugin.start();
    } catch (const std::exception& e) {
      out << "FAIL handshake: " << e.what() << "\n";
      std::filesystem::remove_all(runtime_pattern);
      return false;
    }
    out << manifest.name << " " << manifest.version << " (" << manifest.runtime << "): handshake ok\n"
        << "permissions: " << manifest.permissions.describe() << " (checked inside a jail granting them)\n";
    const auto& catalogue = Schemas::instance().hook_catalogue()["hooks"];
    for (const auto& declared : manifest.hooks)
      if (!plugin.implements(declared)) {
        out << "FAIL manifest: declares hook '" << declared << "' but the plugin does not implement it\n";
        passed = false;
      }
    for (const auto& hook : plugin.hooks()) {
      Json params = example_for_schema(catalogue[hook]["params"]);
      for (int round = 0; round < kRounds; ++round)
        if (!plugin.invoke(hook, params)) break;  // one fault says it; the rounds are for latency
    }
    Json report = plugin.report();
    out << std::left << std::setw(24) << "hook" << std::setw(8) << "result" << std::right << std::setw(10) << "p50 ms"
        << "  detail\n";
    for (const auto& hook : plugin.hooks()) {
      const Json& c = report["hooks"][hook];
      const bool ok = c["ok"].get<long>() == kRounds;
      passed = passed && ok;
      std::ostringstream latency;
      if (!c["p50_ms"].is_null()) latency << std::fixed << std::setprecision(3) << c["p50_ms"].get<double>();
      out << std::left << std::setw(24) << hook << std::setw(8) << (ok ? "pass" : "FAIL") << std::right << std::setw(10)
          << (latency.str().empty() ? "-" : latency.str()) << "  "
          << (ok ? "" : c["last_fault"].is_string() ? c["last_fault"].get<std::string>() : "no reply") << "\n";
    }
    plugin.stop();
  }
  std::filesystem::remove_all(runtime_pattern);
  std::filesystem::remove_all(run.scratch_dir);
  out << (passed ? "PASS: " : "FAIL: ") << manifest.name << (passed ? " conforms to protocol v1\n" : " does not conform\n");
  return passed;
}

}  // namespace bulkhead
