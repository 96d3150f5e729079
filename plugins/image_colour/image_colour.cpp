// image_colour: gamma and saturation, the adjustments EveryDream2's docs suggest for transform_pil_image.
#include <algorithm>
#include <array>
#include <cmath>

#include <bulkhead/plugin.hpp>

namespace {

class ImageColour : public bulkhead::Plugin {
 public:
  void configure() override {
    gamma_ = context().options().value("gamma", 1.0);
    saturation_ = context().options().value("saturation", 1.0);
    if (gamma_ <= 0) throw bulkhead::HookError("option gamma must be > 0");
    for (int v = 0; v < 256; ++v) lut_[v] = float(std::pow(v / 255.0, 1.0 / gamma_) * 255.0);
  }

  bulkhead::Image transform_pil_image(bulkhead::Image image) override {
    const int channels = image.channels();
    if (channels < 3) {
      for (auto& v : image.data) v = clamp(lut_[v]);
      return image;
    }
    for (std::size_t p = 0; p < image.data.size(); p += channels) {
      float r = lut_[image.data[p]], g = lut_[image.data[p + 1]], b = lut_[image.data[p + 2]];
      const float grey = 0.299f * r + 0.587f * g + 0.114f * b;  // ITU-R BT.601 luma
      image.data[p] = clamp(grey + (r - grey) * saturation_);
      image.data[p + 1] = clamp(grey + (g - grey) * saturation_);
      image.data[p + 2] = clamp(grey + (b - grey) * saturation_);
    }
    return image;
  }

 private:
  static std::uint8_t clamp(float v) { return std::uint8_t(std::clamp(std::lround(v), 0L, 255L)); }
  double gamma_ = 1.0;
  float saturation_ = 1.0f;
  std::array<float, 256> lut_{};
};

}  // namespace

BULKHEAD_PLUGIN(ImageColour, "image_colour", "1.0.0", "Gamma and saturation adjustment of training images")
