// recorder (test plugin): implements every hook, appends each call as a JSON line to the file
// named by option record_to, and passes transforms through unchanged.
#include <fstream>

#include <bulkhead/plugin.hpp>

namespace {

using bulkhead::Json;

class Recorder : public bulkhead::Plugin {
 public:
  void on_training_start(const bulkhead::Kwargs& kw) override { record("on_training_start", kw.json()); }
  void on_epoch_start(const bulkhead::Kwargs& kw) override { record("on_epoch_start", kw.json()); }
  void on_step_start(const bulkhead::Kwargs& kw) override { record("on_step_start", kw.json()); }
  void on_step_end(const bulkhead::Kwargs& kw) override { record("on_step_end", kw.json()); }
  void on_epoch_end(const bulkhead::Kwargs& kw) override { record("on_epoch_end", kw.json()); }
  void on_training_end(const bulkhead::Kwargs& kw) override { record("on_training_end", kw.json()); }
  void on_checkpoint_saved(const bulkhead::Kwargs& kw) override { record("on_checkpoint_saved", kw.json()); }
  void on_validation_end(const bulkhead::Kwargs& kw) override { record("on_validation_end", kw.json()); }
  void on_log(const bulkhead::Kwargs& kw) override { record("on_log", kw.json()); }
  std::string transform_caption(const std::string& caption) override {
    record("transform_caption", {{"caption", caption}});
    return caption;
  }
  bulkhead::Image transform_pil_image(bulkhead::Image image) override {
    record("transform_pil_image", {{"width", image.width}, {"height", image.height}, {"mode", image.mode}});
    return image;
  }
  // The batched forms record themselves too, then go through the per-item ones (as the defaults do).
  std::vector<std::string> transform_captions(std::vector<std::string> captions) override {
    record("transform_captions", {{"count", captions.size()}});
    return Plugin::transform_captions(std::move(captions));
  }
  std::vector<bulkhead::Image> transform_pil_images(std::vector<bulkhead::Image> images) override {
    record("transform_pil_images", {{"count", images.size()}});
    return Plugin::transform_pil_images(std::move(images));
  }

 private:
  void record(const char* hook, Json kwargs) {
    const std::string path = context().options().value("record_to", "");
    if (path.empty()) return;
    std::ofstream(path, std::ios::app) << Json{{"hook", hook}, {"kwargs", strip_binary(std::move(kwargs))}}.dump() << "\n";
  }
  static Json strip_binary(Json value) {
    if (value.is_binary()) return Json{{"binary_bytes", value.get_binary().size()}};
    if (value.is_structured())
      for (auto& item : value) item = strip_binary(item);
    return value;
  }
};

}  // namespace

BULKHEAD_PLUGIN(Recorder, "recorder", "1.0.0", "Records every hook call (test plugin)")
