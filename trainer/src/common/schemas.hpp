// schemas.hpp — validates JSON documents against the JSON Schemas in schemas/.
//
//   const auto& schemas = bulkhead::Schemas::instance();
//   auto errors = schemas.validate("train.schema.json", config);   // empty when valid
//
// Schemas are loaded once from <home>/schemas; "$ref"s between files resolve by file name.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bulkhead {

using Json = nlohmann::json;

// One violation: where in the document, and which rule it broke.
struct SchemaError {
  std::string path;     // e.g. "/plugins/0/on_failure" ("" for the document itself)
  std::string message;  // e.g. "value is not one of skip, abort"
  std::string to_string() const { return (path.empty() ? std::string("(document)") : path) + ": " + message; }
};

class Schemas {
 public:
  // The schemas under <home>/schemas, loaded on first use.
  static const Schemas& instance();
  explicit Schemas(const std::filesystem::path& dir);
  ~Schemas();

  // schema_name is a file name under schemas/ ("train.schema.json", "protocol/hello.schema.json"),
  // or "hooks.json#/hooks/<hook>/params" / ".../result" for a hook's own schema.
  std::vector<SchemaError> validate(const std::string& schema_name, const Json& document) const;

  // The parsed hook catalogue (schemas/hooks.json).
  const Json& hook_catalogue() const { return catalogue_; }
  // The catalogue's hook names, in its order.
  std::vector<std::string> hook_names() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  struct Compiled;
  const Compiled& compiled(const std::string& schema_name) const;

  std::filesystem::path dir_;
  Json catalogue_;
  mutable std::map<std::string, std::unique_ptr<Compiled>> cache_;
  mutable std::mutex mutex_;
};

// Adds each missing property that has a "default" in `schema`, recursing into the objects
// present (not into arrays): a config resolved from the schema restates no default in code.
void fill_defaults(Json& value, const Json& schema);

// The errors in one line, "; "-separated: the specific ones, each once (the validator repeats a
// failure at every parent).
std::string join_errors(const std::vector<SchemaError>& errors);

}  // namespace bulkhead
