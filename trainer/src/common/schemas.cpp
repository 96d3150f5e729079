#include "common/schemas.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

#include "common/paths.hpp"

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
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(document);
  std::vector<SchemaError> errors;
  if (validator.validate(schema.schema, target, &results)) return errors;
  valijson::ValidationResults::Error error;
  while (results.popError(error)) errors.push_back({pointer_from_context(error.context), error.description});
  return errors;
}

}  // namespace bulkhead
