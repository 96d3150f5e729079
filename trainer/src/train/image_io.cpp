#include "train/image_io.hpp"

#include <algorithm>
#include <stdexcept>

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace bulkhead {

Image read_image(const std::filesystem::path& path) {
  int width = 0, height = 0, channels = 0;
  stbi_uc* pixels = stbi_load(path.c_str(), &width, &height, &channels, 3);
  if (!pixels) throw std::runtime_error(std::string("cannot decode image: ") + stbi_failure_reason());
  Image image;
  image.width = width;
  image.height = height;
  image.mode = "RGB";
  image.data.assign(pixels, pixels + std::size_t(width) * height * 3);
  stbi_image_free(pixels);
  return image;
}

Image center_crop_resize(const Image& image, int size) {
  int channels = image.channels();
  int side = std::min(image.width, image.height);
  int x0 = (image.width - side) / 2;
  int y0 = (image.height - side) / 2;
  const std::uint8_t* corner = image.data.data() + (std::size_t(y0) * image.width + x0) * channels;
  Image out;
  out.width = out.height = size;
  out.mode = image.mode;
  out.data.resize(std::size_t(size) * size * channels);
  if (!stbir_resize_uint8(corner, side, side, image.width * channels, out.data.data(), size, size, 0, channels))
    throw std::runtime_error("image resize failed");
  return out;
}

Image to_rgb(const Image& image) {
  if (image.mode == "RGB") return image;
  int channels = image.channels();
  Image out;
  out.width = image.width;
  out.height = image.height;
  out.mode = "RGB";
  out.data.resize(std::size_t(image.width) * image.height * 3);
  for (std::size_t p = 0; p < std::size_t(image.width) * image.height; ++p)
    for (int c = 0; c < 3; ++c) out.data[p * 3 + c] = image.data[p * channels + (channels == 1 ? 0 : c)];
  return out;
}

Image upscale(const Image& image, int factor) {
  int channels = image.channels();
  Image out;
  out.width = image.width * factor;
  out.height = image.height * factor;
  out.mode = image.mode;
  out.data.resize(std::size_t(out.width) * out.height * channels);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x)
      for (int c = 0; c < channels; ++c)
        out.data[(std::size_t(y) * out.width + x) * channels + c] =
            image.data[(std::size_t(y / factor) * image.width + x / factor) * channels + c];
  return out;
}

void write_png(const std::filesystem::path& path, const Image& image) {
  if (!stbi_write_png(path.c_str(), image.width, image.height, image.channels(), image.data.data(),
                      image.width * image.channels()))
    throw std::runtime_error("cannot write " + path.string());
}

}  // namespace bulkhead
