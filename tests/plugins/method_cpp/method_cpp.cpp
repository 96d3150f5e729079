// method_cpp (test plugin): a fine-tuning method in C++, to hold the C++ SDK's method hooks to
// schemas/hooks.json. Its recipe is a grid over lr; suggest_trial proposes the smallest lr not
// tried yet; evaluate scores a trial 1 / (1 + val_loss).
#include <bulkhead/plugin.hpp>

namespace {

using bulkhead::Json;

class MethodCpp : public bulkhead::Plugin {
 public:
  Json describe_method(const bulkhead::Kwargs&) override {
    return {{"search_space", {{"lr", {0.001, 0.002}}}},
            {"algorithm", "plugin"},
            {"max_evals", 2},
            {"metrics", {"inverse_val_loss"}},
            {"main_metric", "val_loss"}};
  }

  Json suggest_trial(const bulkhead::Kwargs& kwargs) override {
    const Json space = kwargs.get<Json>("search_space");
    const Json history = kwargs.get<Json>("history");
    const Json values = space.contains("lr") ? space["lr"] : Json::array({0.001});
    for (const auto& value : values) {
      bool tried = false;
      for (const auto& past : history) tried = tried || past["params"].value("lr", Json()) == value;
      if (!tried) return {{"params", {{"lr", value}}}};
    }
    return {{"params", {{"lr", values[0]}}}};
  }

  Json evaluate(const bulkhead::Kwargs& kwargs) override {
    const Json metrics = kwargs.get<Json>("metrics");
    if (!metrics.contains("val_loss")) return {{"metrics", Json::object()}};
    return {{"metrics", {{"inverse_val_loss", 1.0 / (1.0 + metrics["val_loss"].get<double>())}}}};
  }

  void on_trial_end(const bulkhead::Kwargs& kwargs) override {
    context().log("info", "trial " + kwargs.json()["trial"].dump() + " ended " + kwargs.get<std::string>("status"));
  }
};

}  // namespace

BULKHEAD_PLUGIN(MethodCpp, "method_cpp", "1.0.0", "A fine-tuning method in C++ (test plugin)")
