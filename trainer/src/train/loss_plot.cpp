#include "train/loss_plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/image_io.hpp"

namespace bulkhead {
namespace {

constexpr int kWidth = 720, kHeight = 360;
constexpr int kLeft = 64, kRight = 16, kTop = 28, kBottom = 28;

struct Point {
  double step, value;
};

struct Curves {
  std::vector<Point> loss, smoothed, val_loss;
};

Curves read_curves(const std::filesystem::path& metrics) {
  Curves curves;
  std::ifstream in(metrics);
  double average = -1;
  for (std::string line; std::getline(in, line);) {
    const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object() || !record.contains("step")) continue;  // a line cut by a crash
    const double step = record["step"];
    if (record.contains("loss")) {
      const double loss = record["loss"];
      average = average < 0 ? loss : average + 0.05 * (loss - average);
      curves.loss.push_back({step, loss});
      curves.smoothed.push_back({step, average});
    } else if (record.contains("val_loss")) {
      curves.val_loss.push_back({step, record["val_loss"]});
    }
  }
  return curves;
}

struct Frame {
  double max_step, max_value;
  int x(double step) const { return kLeft + int(std::lround(step / max_step * (kWidth - kLeft - kRight))); }
  int y(double value) const {
    return kHeight - kBottom - int(std::lround(std::min(value, max_value) / max_value * (kHeight - kTop - kBottom)));
  }
};

void set(Image& image, int x, int y, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  if (x < 0 || y < 0 || x >= image.width || y >= image.height) return;
  std::uint8_t* px = &image.data[(std::size_t(y) * image.width + x) * 3];
  px[0] = r, px[1] = g, px[2] = b;
}

// Straight segments between consecutive points, one pixel wide.
void polyline(Image& image, const Frame& f, const std::vector<Point>& points, std::uint8_t r, std::uint8_t g,
              std::uint8_t b) {
  for (std::size_t i = 1; i < points.size(); ++i) {
    const int x0 = f.x(points[i - 1].step), y0 = f.y(points[i - 1].value);
    const int x1 = f.x(points[i].step), y1 = f.y(points[i].value);
    const int n = std::max({std::abs(x1 - x0), std::abs(y1 - y0), 1});
    for (int k = 0; k <= n; ++k) set(image, x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n, r, g, b);
  }
}

void axes(Image& image, const Frame& f, const std::string& caption, const char* x_name) {
  for (int x = kLeft; x < kWidth - kRight; ++x) set(image, x, kHeight - kBottom, 0, 0, 0);
  for (int y = kTop; y <= kHeight - kBottom; ++y) set(image, kLeft, y, 0, 0, 0);
  char text[64];
  std::snprintf(text, sizeof text, "%.4g", f.max_value);
  draw_text(image, 4, kTop, text, 1);
  draw_text(image, 4, kHeight - kBottom - 8, "0", 1);
  std::snprintf(text, sizeof text, "%s %.0f", x_name, f.max_step);
  draw_text(image, kWidth - kRight - 80, kHeight - kBottom + 8, text, 1);
  draw_text(image, kLeft, 8, caption, 1);
}

// A filled square around each point, for values that are not a curve (one per trial).
void markers(Image& image, const Frame& f, const std::vector<Point>& points, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  for (const auto& p : points)
    for (int dy = -3; dy <= 3; ++dy)
      for (int dx = -3; dx <= 3; ++dx) set(image, f.x(p.step) + dx, f.y(p.value) + dy, r, g, b);
}

Image blank() {
  Image image;
  image.width = kWidth;
  image.height = kHeight;
  image.data.assign(std::size_t(kWidth) * kHeight * 3, 255);
  return image;
}

}  // namespace

void write_loss_plot(const std::filesystem::path& metrics, const std::filesystem::path& png) {
  const Curves curves = read_curves(metrics);
  if (curves.loss.empty()) return;
  // The first steps' loss is far above the rest: scale to the smoothed curve and val_loss, so the part that moves shows.
  double top = 0;
  for (auto& p : curves.smoothed) top = std::max(top, p.value);
  for (auto& p : curves.val_loss) top = std::max(top, p.value);
  const Frame frame{std::max(1.0, curves.loss.back().step), top > 0 ? top * 1.1 : 1.0};
  Image image = blank();
  polyline(image, frame, curves.loss, 200, 200, 200);
  polyline(image, frame, curves.smoothed, 40, 80, 225);
  polyline(image, frame, curves.val_loss, 220, 40, 40);
  axes(image, frame, "loss (gray), moving average (blue), val_loss (red)", "step");
  write_image(png, image);
}

void write_points_plot(const std::filesystem::path& png, const std::vector<std::pair<double, double>>& points,
                       const std::vector<double>& failed, const std::string& caption) {
  std::vector<Point> ok, bad;
  double top = 0, last = 1;
  for (auto& [x, y] : points) ok.push_back({x, y}), top = std::max(top, y), last = std::max(last, x);
  for (double x : failed) bad.push_back({x, 0}), last = std::max(last, x);
  const Frame frame{last, top > 0 ? top * 1.1 : 1.0};
  Image image = blank();
  polyline(image, frame, ok, 160, 180, 230);
  markers(image, frame, ok, 40, 80, 225);
  markers(image, frame, bad, 220, 40, 40);
  axes(image, frame, caption, "trial");
  write_image(png, image);
}

}  // namespace bulkhead
