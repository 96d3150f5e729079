#include "supervisor/checker.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <unistd.h>

#include <bulkhead/wire.hpp>

#include "common/schemas.hpp"
#include "common/spelling.hpp"
#include "supervisor/supervised_plugin.hpp"

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

namespace {

// A method no catalogue will ever have: a plugin must answer it with the error unknown_method.
constexpr const char* kUnknownMethod = "bulkhead_check_no_such_method";

bool listed(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Prints each failure as it is found; the verdict is whether there was none.
class Verdict {
 public:
  explicit Verdict(std::ostream& out) : out_(out) {}
  void fail(const std::string& area, const std::string& why) {
    out_ << "FAIL " << area << ": " << why << "\n";
    passed_ = false;
  }
  void require(bool ok) { passed_ = passed_ && ok; }
  bool passed() const { return passed_; }

 private:
  std::ostream& out_;
  bool passed_ = true;
};

// The manifest promises hooks and hello names the ones the trainer calls: training goes by hello,
// so a hook in one and not the other is a hook that is silently never called, or promised wrongly.
void check_hooks_agree(const Manifest& manifest, const SupervisedPlugin& plugin, Verdict& verdict) {
  const auto catalogue = Schemas::instance().hook_names();
  for (const auto& hook : plugin.unknown_hooks())
    verdict.fail("hello", "lists hook '" + hook + "', which is not in schemas/hooks.json, so it is never called" +
                              did_you_mean(hook, catalogue));
  if (manifest.path.empty()) return;  // a bare EveryDream2 class path has no manifest to agree with
  for (const auto& hook : manifest.hooks) {
    if (!listed(catalogue, hook))
      verdict.fail("manifest", "declares hook '" + hook + "', which is not in schemas/hooks.json" + did_you_mean(hook, catalogue));
    else if (!plugin.implements(hook))
      verdict.fail("manifest", "declares hook '" + hook + "' but the plugin does not implement it (its hello does not list it)");
  }
  const auto& hooks = Schemas::instance().hook_catalogue()["hooks"];
  for (const auto& hook : plugin.hooks()) {
    // A batched transform comes with its per-item hook: the SDKs send batches through it.
    const std::string batch_of = hooks[hook].value("batch_of", "");
    if (!listed(manifest.hooks, hook) && (batch_of.empty() || !listed(manifest.hooks, batch_of)))
      verdict.fail("hello", "lists hook '" + hook + "', which the manifest does not declare: add it to \"hooks\" in " +
                                manifest.path.string());
  }
}

// A plugin granted model access is checked against a small model shaped like the demo's: the caption
// words' embedding over the vocabulary below, and each parameter its manifest names outright, all
// 4 wide and trainable. Its gate is told so, so that its replies are judged as in training.
const std::vector<std::string> kExampleVocabulary = {"<pad>", "<start>", "<unknown>", "a",      "background",
                                                     "blue",  "circle",  "red",       "square", "white"};
constexpr const char* kExampleEmbedding = "caption.words.weight";

void prepare_model_example(ModelGate& gate, const Manifest& manifest) {
  std::vector<ModelParameter> parameters = {{kExampleEmbedding, {std::int64_t(kExampleVocabulary.size()), 4}, {}}};
  for (const auto& [pattern, modes] : manifest.permissions.model_access)
    if (pattern != kExampleEmbedding && pattern.find_first_of("*?[") == std::string::npos)
      parameters.push_back({pattern, {8, 4}, {}});
  gate.describe(parameters);
  gate.set_vocabulary(kExampleVocabulary, kExampleEmbedding, [](const std::string& token) {
    return !token.empty() && std::all_of(token.begin(), token.end(), [](unsigned char c) { return std::islower(c) || std::isdigit(c); });
  });
  gate.set_step(3);
  for (const auto& parameter : gate.parameters()) gate.set_trainable(parameter.name, std::nullopt);
}

// The readable parameters, whole and inline.
Json example_model_tensors(const ModelGate& gate) {
  Json tensors = Json::array();
  for (const auto& p : gate.parameters()) {
    if (!listed(p.access, "read")) continue;
    std::vector<float> values(std::size_t(p.shape[0] * p.shape[1]));
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = 0.01f * float(i % 17) - 0.08f;
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(values.data());
    std::vector<std::int64_t> rows;
    for (std::int64_t row = 0; row < p.shape[0]; ++row) rows.push_back(row);
    tensors.push_back({{"parameter", p.name},
                       {"rows", rows},
                       {"tensor", {{"dtype", "float32"}, {"shape", p.shape},
                                   {"data", Json::binary({bytes, bytes + values.size() * sizeof(float)})}}}});
  }
  return tensors;
}

Json model_hook_example(const std::string& hook, const ModelGate& gate) {
  if (hook == "on_model_load") {
    Json parameters = Json::array();
    for (const auto& p : gate.parameters())
      parameters.push_back({{"name", p.name}, {"shape", p.shape}, {"dtype", "float32"}, {"access", p.access}});
    return {{"parameters", parameters}, {"vocabulary", kExampleVocabulary}, {"embedding", kExampleEmbedding},
            {"tensors", example_model_tensors(gate)}, {"global_step", 0}, {"resumed", false}};
  }
  if (hook == "on_model_step") return {{"global_step", 3}, {"tensors", example_model_tensors(gate)}};
  return {{"path", "/checkpoints/final-ep0001-gs000003.pt"}, {"reason", "final"}, {"global_step", 3},
          {"tensors", example_model_tensors(gate)}};
}

// Calls every hook the plugin declares kRounds times, and prints the table of results.
void check_declared_hooks(SupervisedPlugin& plugin, Verdict& verdict, std::ostream& out) {
  const auto& catalogue = Schemas::instance().hook_catalogue()["hooks"];
  Json state;  // set_state gets back what get_state gave (they come in catalogue order): a round trip
  if (plugin.model_gate()) prepare_model_example(*plugin.model_gate(), plugin.manifest());
  for (const auto& hook : plugin.hooks()) {
    const bool model_hook = catalogue[hook].value("model_access", false);
    if (model_hook && !plugin.model_gate()) continue;  // training never sends it: nothing to check
    Json params = model_hook ? model_hook_example(hook, *plugin.model_gate()) : example_for_schema(catalogue[hook]["params"]);
    if (hook == "set_state") params["state"] = state;
    for (int round = 0; round < kRounds; ++round) {
      auto result = plugin.invoke(hook, params);
      if (!result) break;  // one fault says it; the rounds are for latency
      if (hook == "get_state") state = (*result)["state"];
    }
  }
  Json report = plugin.report();
  out << std::left << std::setw(24) << "hook" << std::setw(8) << "result" << std::right << std::setw(10) << "p50 ms"
      << "  detail\n";
  for (const auto& hook : plugin.hooks()) {
    if (!report["hooks"].contains(hook)) continue;  // a model hook of a plugin without model access
    const Json& c = report["hooks"][hook];
    const bool ok = c["ok"].get<long>() == kRounds;
    verdict.require(ok);
    std::ostringstream latency;
    if (!c["p50_ms"].is_null()) latency << std::fixed << std::setprecision(3) << c["p50_ms"].get<double>();
    out << std::left << std::setw(24) << hook << std::setw(8) << (ok ? "pass" : "FAIL") << std::right << std::setw(10)
        << (latency.str().empty() ? "-" : latency.str()) << "  "
        << (ok ? "" : c["last_fault"].is_string() ? c["last_fault"].get<std::string>() : "no reply") << "\n";
  }
}

// How a reply ended, for a message: "the result {...}", "the error 'hook_failed': ...", ...
std::string describe(const Reply& reply) {
  constexpr std::size_t kShown = 200;  // an image's bytes would drown the message
  switch (reply.status) {
    case Reply::Status::ok: {
      const std::string result = reply.result.dump();
      return "the result " + (result.size() > kShown ? result.substr(0, kShown) + "..." : result);
    }
    case Reply::Status::error: return "the error '" + reply.code + "': " + reply.detail;
    case Reply::Status::timeout: return "no reply within its deadline";
    case Reply::Status::invalid: return "an invalid reply: " + reply.detail;
    case Reply::Status::disconnected: return "no reply: " + reply.detail;
  }
  return "";
}

// Training may send a method this plugin does not know (a newer trainer): it must say so, with
// the code the trainer recognises, and go on serving.
void check_unknown_method(SupervisedPlugin& plugin, Verdict& verdict) {
  const Reply reply = plugin.probe(kUnknownMethod, Json::object());
  if (reply.status != Reply::Status::error || reply.code != "unknown_method")
    verdict.fail("unknown method", std::string("a request for '") + kUnknownMethod +
                                       "' must be answered with the error code 'unknown_method' (docs/protocol.md 3.4); it got " +
                                       describe(reply));
}

// A catalogue hook the plugin did not declare may still reach it (docs/protocol.md 3.1): an
// observer answers nil, a transform its input unchanged, so that a chain of plugins stays whole;
// or, like any method it does not know (a hook newer than the plugin), the error unknown_method.
// A hook newer than the protocol the plugin speaks is not asked: nothing it was written against
// named it (an SDK of that time may even take it for one of its own, and fail).
void check_undeclared_hooks(SupervisedPlugin& plugin, Verdict& verdict) {
  for (const auto& [hook, spec] : Schemas::instance().hook_catalogue()["hooks"].items()) {
    // Model hooks go only to a plugin that declares them and is granted model access; the state
    // pair only to one that declares both (the trainer never sends them otherwise).
    if (plugin.implements(hook) || spec.value("model_access", false) || spec.value("state", false)) continue;
    if (spec.value("since", 1) > plugin.protocol()) continue;
    const Json params = example_for_schema(spec["params"]);
    const bool transform = spec["kind"] == "transform";
    const Reply reply = plugin.probe(hook, params);
    const bool unknown = reply.status == Reply::Status::error && reply.code == "unknown_method";
    if (!unknown && (reply.status != Reply::Status::ok || reply.result != (transform ? params : Json())))
      verdict.fail("undeclared hook", "'" + hook + "', which the plugin does not declare, must be answered with " +
                                          (transform ? "its input unchanged" : "nil") +
                                          " or the error unknown_method (docs/protocol.md 3.1); it got " +
                                          describe(reply));
  }
}

void check_protocol_problems(const SupervisedPlugin& plugin, Verdict& verdict) {
  for (const auto& problem : plugin.protocol_problems()) verdict.fail("protocol", problem);
}

struct CheckFolders {
  std::filesystem::path scratch, runtime;
  CheckFolders() {
    scratch = std::filesystem::temp_directory_path() / ("bulkhead-check-" + std::to_string(getpid()));
    std::filesystem::create_directories(scratch);
    std::string pattern = (std::filesystem::temp_directory_path() / "bulkhead-XXXXXX").string();
    runtime = mkdtemp(pattern.data()) ? pattern : std::string();
  }
  ~CheckFolders() {
    std::error_code ignored;
    std::filesystem::remove_all(runtime, ignored);
    std::filesystem::remove_all(scratch, ignored);
  }
};

}  // namespace

bool check_plugin(const std::string& entry, const PluginCatalog& catalog, std::ostream& out) {
  Manifest manifest = catalog.resolve(entry);
  PluginSettings settings;
  settings.entry = entry;
  settings.max_restarts = 1000;  // the checker reports every fault; it never quarantines
  settings.grant = manifest.permissions.to_json();  // checked in the jail it asks for
  CheckFolders folders;
  RunInfo run;
  run.project_name = "plugins-check";
  run.scratch_dir = folders.scratch;
  run.run_dir = run.scratch_dir;

  Verdict verdict(out);
  int protocol = 0;
  {
    SupervisedPlugin plugin(manifest, settings, run, folders.runtime, [](const std::string&, const Json&) {},
                            [](const std::string&) {});
    try {
      plugin.start();
    } catch (const std::exception& e) {
      out << "FAIL handshake: " << e.what() << "\n";
      return false;
    }
    out << manifest.name << " " << manifest.version << " (" << manifest.runtime << "): handshake ok, protocol "
        << plugin.protocol() << (plugin.protocol() < wire::kProtocolVersion ? " (an older one, still served: docs/protocol.md, Versions)" : "")
        << "\n"
        << "permissions: " << manifest.permissions.describe() << " (checked inside a jail granting them)\n";
    check_hooks_agree(manifest, plugin, verdict);
    check_declared_hooks(plugin, verdict, out);
    check_unknown_method(plugin, verdict);
    check_undeclared_hooks(plugin, verdict);
    check_protocol_problems(plugin, verdict);
    protocol = plugin.protocol();
    const std::string shutdown = plugin.stop();
    if (!shutdown.empty()) verdict.fail("shutdown", shutdown);
  }
  out << (verdict.passed() ? "PASS: " : "FAIL: ") << manifest.name
      << (verdict.passed() ? " conforms to protocol " + std::to_string(protocol) + "\n" : std::string(" does not conform\n"));
  return verdict.passed();
}

}  // namespace bulkhead
