// method_plugin.hpp — a study's method plugin (docs/methods.md): started for the whole study, asked
// describe_method, its recipe checked before any training.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "study/method.hpp"
#include "study/study.hpp"
#include "supervisor/plugin_runner.hpp"
#include "train/config.hpp"

namespace bulkhead {

// The method plugin and its recipe: started, asked describe_method, checked. Throws ConfigError
// when it cannot be started, does not answer, or its recipe is wrong.
class MethodPlugin {
 public:
  MethodPlugin(const Json& user, const TrainConfig& base, const std::filesystem::path& dir, const StudyRequest& request);

  const MethodSpec& spec() const { return spec_; }
  const std::string& name() const { return name_; }
  PluginRunner& runner() { return *runner_; }

 private:
  Json ask_or_fail(const std::string& hook, const Json& kwargs);

  std::string name_;
  std::unique_ptr<PluginRunner> runner_;
  MethodSpec spec_;
};

}  // namespace bulkhead
