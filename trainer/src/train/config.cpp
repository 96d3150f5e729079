#include "train/config.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "common/schemas.hpp"
#include "supervisor/host_process.hpp"
#include "supervisor/manifest.hpp"
#include "supervisor/plugin_runner.hpp"
#include "supervisor/python_runtime.hpp"

namespace bulkhead {
namespace {

const Json& train_schema() {
  static const Json schema = [] {
    auto path = Schemas::instance().dir() / "train.schema.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    return Json::parse(in);
  }();
  return schema;
}

// The schema validator would only say "additional property"; a person wants
// the key's place and the key they probably meant.
void find_unknown_keys(const Json& value, const Json& schema, const std::string& where,
                       std::vector<std::string>& problems) {
  if (!value.is_object() || !schema.contains("properties")) return;
  const Json& properties = schema["properties"];
  std::vector<std::string> known;
  for (auto& [name, _] : properties.items()) known.push_back(name);
  for (auto& [key, child] : value.items()) {
    if (!properties.contains(key)) {
      std::string message = where + "/" + key + ": unknown key";
      auto suggestion = nearest_key(key, known);
      if (!suggestion.empty()) message += " (did you mean \"" + suggestion + "\"?)";
      problems.push_back(message);
    } else {
      find_unknown_keys(child, properties[key], where + "/" + key, problems);
    }
  }
}

// What the schema wants at a JSON pointer, e.g. " (expected integer, minimum 1, maximum 4096)".
std::string expectation(const std::string& pointer) {
  const Json* schema = &train_schema();
  std::istringstream parts(pointer);
  std::string part;
  std::getline(parts, part, '/');  // the empty segment before the first '/'
  while (std::getline(parts, part, '/')) {
    if (schema->contains("properties") && (*schema)["properties"].contains(part)) schema = &(*schema)["properties"][part];
    else if (schema->contains("items")) schema = &(*schema)["items"];
    else return "";
  }
  std::vector<std::string> rules;
  if (schema->contains("type")) rules.push_back((*schema)["type"].get<std::string>());
  if (schema->contains("enum")) {
    std::string values;
    for (auto& v : (*schema)["enum"]) values += (values.empty() ? "" : ", ") + v.dump();
    rules.push_back("one of " + values);
  }
  for (const char* key : {"minimum", "exclusiveMinimum", "maximum", "multipleOf"})
    if (schema->contains(key)) rules.push_back(std::string(key) + " " + (*schema)[key].dump());
  if (rules.empty()) return "";
  std::string text = " (expected";
  for (std::size_t i = 0; i < rules.size(); ++i) text += (i ? ", " : " ") + rules[i];
  return text + ")";
}

// Rules the schema cannot say.
void check_consistency(const TrainConfig& c, const std::string& source, std::vector<std::string>& problems) {
  int levels = static_cast<int>(c.model.channel_mults.size());
  int factor = 1 << (levels - 1);
  if (c.resolution % factor != 0)
    problems.push_back("/resolution: " + std::to_string(c.resolution) + " must be divisible by " +
                       std::to_string(factor) + " (2^(levels-1) for model.channel_mults with " +
                       std::to_string(levels) + " levels)");
  // A misspelt plugin name must fail here, not after the data is loaded. EveryDream2 class paths
  // resolve here too; whether their module imports is the Python host's to say, at start-up.
  PluginCatalog catalog(plugin_dirs_from_environment());
  const auto& entries = c.plugins;
  bool python_plugins = false;  // each resolved once, here
  for (std::size_t i = 0; i < entries.size(); ++i) {
    try {
      const Manifest manifest = catalog.resolve(entries[i].entry, c.source_dir);
      python_plugins = python_plugins || manifest.runtime == "python";
      const auto problem = ungranted(manifest.name, manifest.path, manifest.permissions,
                                     Permissions::from_json(entries[i].grant, c.source_dir), source);
      if (!problem.empty()) problems.push_back("/plugins/" + std::to_string(i) + ": " + problem);
    } catch (const std::exception& e) {
      problems.push_back("/plugins/" + std::to_string(i) + ": " + e.what());
    }
  }
  // A Python plugin on an interpreter without the SDK's modules would fail at every start.
  if (python_plugins) {
    const auto interpreter = python_interpreter(c.python.empty() ? std::filesystem::path() : c.from_config(c.python));
    const std::string problem = python_sdk_problem(interpreter);
    if (!problem.empty()) problems.push_back("/python: " + problem);
  }
  // Fail closed: no plugin starts without its jail, and that is known before the data is loaded.
  const auto jail = JailSettings::from_json(c.json.at("jail"));
  try {
    if (!entries.empty() && jail.mode == JailSettings::Mode::full) {
      const std::string why = HostProcess::full_jail_unavailable(jail);
      if (!why.empty()) problems.push_back("/jail: " + why);
    }
  } catch (const std::exception& e) {
    problems.push_back(std::string("/jail: ") + e.what());
  }
}

TrainConfig typed(const Json& j) {
  TrainConfig c;
  c.json = j;
  c.project_name = j.at("project_name");
  c.data_root = j.at("data_root");
  c.max_epochs = j.at("max_epochs");
  c.batch_size = j.at("batch_size");
  c.grad_accum = j.at("grad_accum");
  c.lr = j.at("lr");
  c.lr_scheduler = j.at("lr_scheduler");
  c.lr_warmup_steps = j.at("lr_warmup_steps");
  c.weight_decay = j.at("weight_decay");
  c.max_grad_norm = j.at("max_grad_norm");
  c.resolution = j.at("resolution");
  c.cond_dropout = j.at("cond_dropout");
  c.seed = j.at("seed");
  c.validation_split = j.at("validation_split");
  c.save_every_n_epochs = j.at("save_every_n_epochs");
  c.ckpt_every_n_minutes = j.at("ckpt_every_n_minutes");
  c.keep_last_n_checkpoints = j.at("keep_last_n_checkpoints");
  c.max_rank_restarts = j.at("max_rank_restarts");
  c.sample_every_n_epochs = j.at("sample_every_n_epochs");
  c.sample_steps = j.at("sample_steps");
  c.plugin_state_every_n_steps = j.at("plugin_state").at("every_n_steps");
  c.plugin_state_each_epoch = j.at("plugin_state").at("each_epoch");
  if (j.at("sample_prompts").is_array()) c.sample_prompts = j.at("sample_prompts").get<std::vector<std::string>>();
  c.sample_inference_steps = j.at("sample_inference_steps");
  c.sample_guidance = j.at("sample_guidance");
  c.device = j.at("device");
  c.amp = j.at("amp");
  c.num_workers = j.at("num_workers");
  c.prefetch_batches = j.at("prefetch_batches");
  c.batch_transforms = j.at("batch_transforms");
  c.num_threads = j.at("num_threads");
  c.python = j.at("python");
  c.plugins = plugin_settings_from_config(j.at("plugins"));
  c.max_image_pixels = j.at("max_image_pixels");
  c.max_tokens = j.at("max_tokens");
  c.log_every_n_steps = j.at("log_every_n_steps");
  c.bench_pace_ms = j.at("bench_pace_ms");
  c.logdir = j.at("logdir");
  c.run_dir = j.value("run_dir", "");
  const Json& m = j.at("model");
  c.model.channels = m.at("channels");
  c.model.channel_mults = m.at("channel_mults").get<std::vector<int>>();
  c.model.blocks_per_level = m.at("blocks_per_level");
  c.model.embed_dim = m.at("embed_dim");
  return c;
}

std::string join_problems(const std::string& source, const std::vector<std::string>& problems) {
  std::ostringstream out;
  out << source << ": invalid training config (" << problems.size() << " problem"
      << (problems.size() == 1 ? "" : "s") << ")";
  for (auto& p : problems) out << "\n  " << source << ": " << p;
  return out.str();
}

}  // namespace

Json read_config_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path.string() + ": cannot open the config file");
  Json config;
  try {
    config = Json::parse(in);
  } catch (const Json::exception& e) {  // syntax, and numbers out of range (1e309)
    throw ConfigError(path.string() + ": not valid JSON: " + e.what());
  }
  if (!config.is_object())
    throw ConfigError(path.string() + ": the config must be a JSON object ({...}), not " + config.type_name());
  return config;
}

namespace {

// EveryDream2 keys that Bulkhead does not use come out of the config, each with its reason.
std::vector<std::pair<std::string, std::string>> take_everydream2_unused(Json& user) {
  std::vector<std::pair<std::string, std::string>> taken;
  for (auto& [key, why] : train_schema().at("x-everydream2-unused").items()) {
    if (!user.contains(key)) continue;
    taken.emplace_back(key, why.get<std::string>());
    user.erase(key);
  }
  return taken;
}

// A prompt file: one prompt per line, blank lines skipped (EveryDream2's sample_prompts.txt).
std::vector<std::string> prompt_lines(std::istream& in) {
  std::vector<std::string> prompts;
  for (std::string line; std::getline(in, line);) {
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (!line.empty()) prompts.push_back(line);
  }
  return prompts;
}

// EveryDream2's sample_prompts.json: the prompts of "samples"; its other settings are named as unused, once each.
std::vector<std::string> prompt_json(std::istream& in, const std::string& file, TrainConfig& config) {
  const Json json = Json::parse(in);
  std::vector<std::string> prompts;
  std::set<std::string> unused;
  for (auto& sample : json.value("samples", Json::array())) {
    prompts.push_back(sample.value("prompt", ""));
    for (auto& [key, _] : sample.items())
      if (key != "prompt") unused.insert("samples[]." + key);
  }
  for (auto& [key, _] : json.items())
    if (key != "samples") unused.insert(key);
  for (auto& key : unused)
    config.everydream2_unused.emplace_back(key + " (in " + file + ")",
                                           "samples use the run's seed, resolution, sample_inference_steps and sample_guidance");
  return prompts;
}

// sample_prompts may name a prompt file (relative to the config file), as EveryDream2's does.
void read_sample_prompts(TrainConfig& config, std::vector<std::string>& problems) {
  Json& prompts = config.json["sample_prompts"];
  if (!prompts.is_string()) return;
  const auto path = config.from_config(prompts.get<std::string>());
  std::ifstream in(path);
  if (!in) {
    problems.push_back("/sample_prompts: cannot read the prompt file " + path.string());
    return;
  }
  try {
    config.sample_prompts = path.extension() == ".json" ? prompt_json(in, path.string(), config) : prompt_lines(in);
  } catch (const Json::exception& e) {
    problems.push_back("/sample_prompts: " + path.string() + ": " + e.what());
  }
  prompts = config.sample_prompts;  // config.json and checkpoints stand alone
}

}  // namespace

TrainConfig resolve_config(const Json& given, const std::string& source,
                           const std::filesystem::path& source_dir) {
  if (!given.is_object()) throw ConfigError(source + ": the config must be a JSON object");
  Json user = given;
  auto everydream2_unused = take_everydream2_unused(user);
  std::vector<std::string> problems;
  find_unknown_keys(user, train_schema(), "", problems);
  auto errors = Schemas::instance().validate("train.schema.json", user);
  for (auto& e : errors) {
    // Keep the most specific report: the validator repeats a failure at every
    // parent, and for a oneOf it also reports the branches that did not apply.
    // Unknown keys were named better above.
    bool deeper = std::any_of(errors.begin(), errors.end(), [&](const SchemaError& other) {
      return other.path.size() > e.path.size() && other.path.compare(0, e.path.size() + 1, e.path + "/") == 0;
    });
    if (deeper || e.message.find("Failed to validate") != std::string::npos ||
        e.message.find("additionalProperties") != std::string::npos)
      continue;
    problems.push_back((e.path.empty() ? "(document)" : e.path) + ": " + e.message + expectation(e.path));
  }
  if (problems.empty() && !errors.empty())
    problems.push_back("(document): does not match schemas/train.schema.json");
  if (!problems.empty()) throw ConfigError(join_problems(source, problems));

  Json resolved = user;
  fill_defaults(resolved, train_schema());
  TrainConfig config = typed(resolved);
  config.source_dir = source_dir;
  config.everydream2_unused = std::move(everydream2_unused);
  read_sample_prompts(config, problems);
  check_consistency(config, source, problems);
  if (!problems.empty()) throw ConfigError(join_problems(source, problems));
  return config;
}

std::vector<std::string> tunable_keys() {
  std::vector<std::string> keys;
  for (auto& [key, property] : train_schema().at("properties").items()) {
    if (property.value("x-tunable", false)) keys.push_back(key);
    if (property.contains("properties"))
      for (auto& [inner, nested] : property["properties"].items())
        if (nested.value("x-tunable", false)) keys.push_back(key + "." + inner);
  }
  return keys;
}

}  // namespace bulkhead
