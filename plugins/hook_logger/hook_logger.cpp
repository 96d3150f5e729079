// hook_logger: logs each hook's arguments, so you can see what a plugin is given.
#include <bulkhead/plugin.hpp>

namespace {

class HookLogger : public bulkhead::Plugin {
 public:
  void on_training_start(const bulkhead::Kwargs& kw) override { show("on_training_start", kw); }
  void on_epoch_start(const bulkhead::Kwargs& kw) override { show("on_epoch_start", kw); }
  void on_step_start(const bulkhead::Kwargs& kw) override { show_step("on_step_start", kw); }
  void on_step_end(const bulkhead::Kwargs& kw) override { show_step("on_step_end", kw); }
  void on_epoch_end(const bulkhead::Kwargs& kw) override { show("on_epoch_end", kw); }
  void on_training_end(const bulkhead::Kwargs& kw) override { show("on_training_end", kw); }
  void on_checkpoint_saved(const bulkhead::Kwargs& kw) override { show("on_checkpoint_saved", kw); }
  void on_validation_end(const bulkhead::Kwargs& kw) override { show("on_validation_end", kw); }
  void on_log(const bulkhead::Kwargs& kw) override { show_step("on_log", kw); }

 private:
  void show(const char* hook, const bulkhead::Kwargs& kw) {
    context().log("info", std::string(hook) + " " + summary(kw.json()));
  }
  // Step hooks come often: log every n-th (option every_n_steps).
  void show_step(const char* hook, const bulkhead::Kwargs& kw) {
    const long every = context().options().value("every_n_steps", 1L);
    if (every > 0 && kw.get<long>("global_step", 0) % every == 0) show(hook, kw);
  }
  // Binary payloads (tensors) are shown by size, not dumped.
  static std::string summary(const bulkhead::Json& kwargs) { return without_binary(kwargs).dump(); }
  static bulkhead::Json without_binary(bulkhead::Json value) {
    if (value.is_binary()) return "<" + std::to_string(value.get_binary().size()) + " bytes>";
    if (value.is_structured())
      for (auto& item : value) item = without_binary(item);
    return value;
  }
};

}  // namespace

BULKHEAD_PLUGIN(HookLogger, "hook_logger", "1.0.0", "Logs every hook and its arguments")
