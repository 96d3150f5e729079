#include "common/schemas.hpp"

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

#include "common/paths.hpp"
#include "common/spelling.hpp"

namespace bulkhead {
namespace {

Json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read schema " + path.string());
  try {
    return Json::parse(in);
  } catch (const Json::parse_error& e) {
    throw std::runtime_error("schema " + path.string() + " is not valid JSON: " + e.what());
  }
}

// valijson's context is a list like {"<root>", "[plugins]", "[0]"}: turn it into "/plugins/0".
std::string pointer_from_context(const std::vector<std::string>& context) {
  std::string path;
  for (const auto& part : context) {
    if (part == "<root>") continue;
    std::string name = part;
    if (name.size() >= 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
    if (name.size() >= 2 && name.front() == '"' && name.back() == '"') name = name.substr(1, name.size() - 2);
    path += "/" + name;
  }
  return path;
}

// The JSON Schema name of a value's type, as a "type" constraint would call it.
std::string type_name(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "integer";
    case Json::value_t::number_float: return "number";
    case Json::value_t::string: return "string";
    case Json::value_t::array: return "array";
    case Json::value_t::binary: return "bin";
    default: return "object";
  }
}

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : separator) + item;
  return text;
}

// A schema and the document its local "$ref"s ("#/definitions/...") resolve in.
struct Located {
  Json schema;
  Json root;
};

Located resolve(const std::filesystem::path& dir, Located at) {
  for (int depth = 0; depth < 16 && at.schema.is_object() && at.schema.contains("$ref"); ++depth) {
    const std::string ref = at.schema["$ref"];
    const auto hash = ref.find('#');
    if (hash != 0) {
      const std::string file = ref.substr(0, hash);
      at.root = read_json(std::filesystem::exists(dir / file) ? dir / file : dir / "protocol" / file);
    }
    const std::string pointer = hash == std::string::npos ? "" : ref.substr(hash + 1);
    at.schema = at.root.value(Json::json_pointer(pointer), Json());
  }
  return at;
}

std::optional<Located> child(const std::filesystem::path& dir, const Located& at, const std::string& key, int depth = 0) {
  const Json& schema = at.schema;
  if (!schema.is_object() || depth > 8) return std::nullopt;
  if (schema.contains("items") && schema["items"].is_object()) return resolve(dir, {schema["items"], at.root});
  if (schema.contains("properties") && schema["properties"].contains(key)) return resolve(dir, {schema["properties"][key], at.root});
  // Under alternatives, the first that knows the key (set_arg's "value", say).
  for (const char* branch : {"oneOf", "anyOf", "allOf"})
    for (const auto& alternative : schema.value(branch, Json::array()))
      if (auto found = child(dir, resolve(dir, {alternative, at.root}), key, depth + 1)) return found;
  if (schema.contains("additionalProperties") && schema["additionalProperties"].is_object())
    return resolve(dir, {schema["additionalProperties"], at.root});
  return std::nullopt;
}

Located schema_at(const std::filesystem::path& dir, const Located& top, const std::vector<std::string>& context) {
  Located at = resolve(dir, top);
  for (const auto& part : context) {
    if (part == "<root>") continue;
    // valijson writes a property and an index alike ("[name]", "[0]"): the schema tells which.
    auto found = child(dir, at, pointer_from_context({part}).substr(1));
    if (!found) return {};
    at = *found;
  }
  return at;
}

std::vector<std::string> expected_types(const std::filesystem::path& dir, const Located& at, int depth = 0) {
  std::vector<std::string> types;
  const Json& schema = at.schema;
  if (!schema.is_object() || depth > 8) return types;
  if (schema.contains("type")) {
    for (const auto& type : schema["type"].is_array() ? schema["type"] : Json::array({schema["type"]})) types.push_back(type);
  }
  for (const char* branch : {"oneOf", "anyOf"})
    for (const auto& alternative : schema.value(branch, Json::array()))
      for (const auto& type : expected_types(dir, resolve(dir, {alternative, at.root}), depth + 1))
        if (std::find(types.begin(), types.end(), type) == types.end()) types.push_back(type);
  return types;
}

// valijson says which rule broke, not with what: add the expected and the actual value.
std::string explain(const std::filesystem::path& dir, const std::string& description, const Located& schema,
                    const Json* value) {
  if (!value) return description;
  if (description.find("'type' constraint") != std::string::npos) {
    // Under alternatives (null or object), the one that failed is of another type than the value's.
    auto types = expected_types(dir, schema);
    types.erase(std::remove(types.begin(), types.end(), type_name(*value)), types.end());
    return description + " expected " + (types.empty() ? "another type" : join(types, " or ")) + ", got " + type_name(*value) + ".";
  }
  if (description.find("enum values") != std::string::npos && schema.schema.contains("enum")) {
    std::vector<std::string> allowed, names;
    for (const auto& option : schema.schema["enum"]) {
      allowed.push_back(option.dump());
      if (option.is_string()) names.push_back(option);
    }
    return description + " got " + value->dump() + (value->is_string() ? did_you_mean(*value, names) : "") +
           "; allowed: " + join(allowed, ", ") + ".";
  }
  return description;
}

}  // namespace

struct Schemas::Compiled {
  Json document;  // kept alive: valijson's adapters point into it
  valijson::Schema schema;
};

const Schemas& Schemas::instance() {
  static const Schemas schemas(paths::home() / "schemas");
  return schemas;
}

Schemas::Schemas(const std::filesystem::path& dir) : dir_(dir), catalogue_(read_json(dir / "hooks.json")) {}
Schemas::~Schemas() = default;

std::vector<std::string> Schemas::hook_names() const {
  std::vector<std::string> names;
  for (const auto& [hook, spec] : catalogue_["hooks"].items()) names.push_back(hook);
  return names;
}

const Schemas::Compiled& Schemas::compiled(const std::string& schema_name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& slot = cache_[schema_name];
  if (slot) return *slot;

  auto compiled = std::make_unique<Compiled>();
  const auto hash = schema_name.find("#/hooks/");
  if (hash != std::string::npos) {
    // "hooks.json#/hooks/<hook>/<params|result>": the hook's schema, with the catalogue's definitions.
    std::string rest = schema_name.substr(hash + 8);
    const auto slash = rest.find('/');
    const std::string hook = rest.substr(0, slash), part = rest.substr(slash + 1);
    if (!catalogue_["hooks"].contains(hook)) throw std::runtime_error("no hook '" + hook + "' in hooks.json");
    compiled->document = catalogue_["hooks"][hook].at(part);
    compiled->document["definitions"] = catalogue_["definitions"];
  } else {
    compiled->document = read_json(dir_ / schema_name);
  }

  std::map<std::string, std::unique_ptr<Json>> fetched;
  auto fetch = [&](const std::string& uri) -> const Json* {
    std::string name = uri.substr(0, uri.find('#'));
    for (const auto& candidate : {dir_ / name, dir_ / "protocol" / name}) {
      if (std::filesystem::exists(candidate)) {
        auto& doc = fetched[candidate.string()];
        if (!doc) doc = std::make_unique<Json>(read_json(candidate));
        return doc.get();
      }
    }
    throw std::runtime_error("schema " + schema_name + " refers to " + uri + ", which is not under " + dir_.string());
  };
  valijson::SchemaParser parser;
  valijson::adapters::NlohmannJsonAdapter adapter(compiled->document);
  parser.populateSchema(adapter, compiled->schema, fetch, [](const Json*) {});
  slot = std::move(compiled);
  return *slot;
}

std::vector<SchemaError> Schemas::validate(const std::string& schema_name, const Json& document) const {
  const Compiled& schema = compiled(schema_name);
  valijson::Validator validator;
  valijson::adapters::NlohmannJsonAdapter target(document);
  std::vector<SchemaError> errors;
  // Without a results object, valijson stops at the first failure and records no paths: the
  // common case (every reply a plugin sends) costs a fraction. Failures run again to say why.
  if (validator.validate(schema.schema, target, nullptr)) return errors;
  valijson::ValidationResults results;
  validator.validate(schema.schema, target, &results);
  valijson::ValidationResults::Error error;
  while (results.popError(error)) {
    const std::string pointer = pointer_from_context(error.context);
    const Json* value = nullptr;
    try {
      value = &document.at(Json::json_pointer(pointer));
    } catch (const Json::exception&) {
    }
    const Located root{schema.document, schema.document};
    errors.push_back({pointer, explain(dir_, error.description, schema_at(dir_, root, error.context), value)});
  }
  return errors;
}

void fill_defaults(Json& value, const Json& schema) {
  if (!value.is_object() || !schema.contains("properties")) return;
  for (auto& [name, property] : schema["properties"].items()) {
    if (!value.contains(name) && property.contains("default")) value[name] = property["default"];
    if (value.contains(name)) fill_defaults(value[name], property);
  }
}

// The validator reports a failure again at every parent ("Failed to validate against ..."):
// kept are the specific ones, once each.
std::string join_errors(const std::vector<SchemaError>& errors) {
  std::vector<std::string> specific;
  for (const auto& error : errors) {
    const std::string line = error.to_string();
    if (line.find("Failed to validate against") != std::string::npos) continue;
    if (std::find(specific.begin(), specific.end(), line) == specific.end()) specific.push_back(line);
  }
  if (specific.empty() && !errors.empty()) specific.push_back(errors.front().to_string());
  std::string text;
  for (const auto& line : specific) text += (text.empty() ? "" : "; ") + line;
  return text;
}

}  // namespace bulkhead
