#include "train/image_io.hpp"

#include <webp/decode.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <fstream>
#include <vector>
#include <stdexcept>

#include "common/atomic_file.hpp"

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
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

namespace bulkhead {

namespace {

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) throw IoError(path, "read", errno);
  return bytes;
}

// Checked before decoding: a small file can claim a huge image (a 388 KB PNG of 20000x20000 decodes to 1.2 GB).
void check_size(int width, int height, std::int64_t max_pixels) {
  const std::int64_t pixels = std::int64_t(width) * height;
  if (pixels > max_pixels)
    throw std::runtime_error(std::to_string(width) + "x" + std::to_string(height) + " = " + std::to_string(pixels) +
                             " pixels, more than max_image_pixels (" + std::to_string(max_pixels) + ")");
}

bool is_webp(const std::string& bytes) {
  return bytes.size() >= 12 && bytes.compare(0, 4, "RIFF") == 0 && bytes.compare(8, 4, "WEBP") == 0;
}

Image rgb_image(const std::uint8_t* pixels, int width, int height) {
  Image image;
  image.width = width;
  image.height = height;
  image.mode = "RGB";
  image.data.assign(pixels, pixels + std::size_t(width) * height * 3);
  return image;
}

Image decode_webp(const std::string& bytes, std::int64_t max_pixels) {
  const auto* data = reinterpret_cast<const std::uint8_t*>(bytes.data());
  int width = 0, height = 0;
  if (!WebPGetInfo(data, bytes.size(), &width, &height)) throw std::runtime_error("cannot decode image: bad WebP header");
  check_size(width, height, max_pixels);
  std::uint8_t* pixels = WebPDecodeRGB(data, bytes.size(), &width, &height);
  if (!pixels) throw std::runtime_error("cannot decode image: corrupt WebP data");
  Image image = rgb_image(pixels, width, height);
  WebPFree(pixels);
  return image;
}

Image decode_stb(const std::string& bytes, std::int64_t max_pixels) {
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int size = static_cast<int>(std::min<std::size_t>(bytes.size(), INT_MAX));
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(data, size, &width, &height, &channels))
    throw std::runtime_error(std::string("cannot decode image: ") + stbi_failure_reason());
  check_size(width, height, max_pixels);
  stbi_uc* pixels = stbi_load_from_memory(data, size, &width, &height, &channels, 3);
  if (!pixels) throw std::runtime_error(std::string("cannot decode image: ") + stbi_failure_reason());
  Image image = rgb_image(pixels, width, height);
  stbi_image_free(pixels);
  return image;
}

}  // namespace

Image read_image(const std::filesystem::path& path, std::int64_t max_pixels) {
  const std::string bytes = read_bytes(path);
  return is_webp(bytes) ? decode_webp(bytes, max_pixels) : decode_stb(bytes, max_pixels);
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

void write_image(const std::filesystem::path& path, const Image& image) {
  AtomicFile file(path);
  auto sink = [](void* context, void* data, int size) { static_cast<AtomicFile*>(context)->write(data, std::size_t(size)); };
  const int stride = image.width * image.channels();
  const int ok = is_jpeg_name(path)
                     ? stbi_write_jpg_to_func(sink, &file, image.width, image.height, image.channels(), image.data.data(), 95)
                     : stbi_write_png_to_func(sink, &file, image.width, image.height, image.channels(), image.data.data(), stride);
  if (!ok) throw std::runtime_error("cannot encode " + path.string());
  file.commit();
}

namespace {

std::string ascii(const std::string& text) {
  std::string out;
  for (unsigned char c : text)
    if (c < 0x80) out += static_cast<char>(c);
    else if ((c & 0xC0) != 0x80) out += '?';  // one '?' per UTF-8 character, not per byte
  return out;
}

void fill(Image& image, int x0, int y0, int x1, int y1) {
  for (int y = std::max(0, y0); y < std::min(y1, image.height); ++y)
    for (int x = std::max(0, x0); x < std::min(x1, image.width); ++x)
      std::fill_n(&image.data[(std::size_t(y) * image.width + x) * 3], 3, std::uint8_t(0));
}

}  // namespace

int text_height(const std::string& text) {
  std::string printable = ascii(text);
  return stb_easy_font_height(printable.data());
}

void draw_text(Image& image, int x, int y, const std::string& text, int scale) {
  std::string printable = ascii(text);
  std::vector<float> quads(printable.size() * 300 + 16);  // the header's advice: about 270 bytes per character
  const int count = stb_easy_font_print(0, 0, printable.data(), nullptr, quads.data(),
                                        static_cast<int>(quads.size() * sizeof(float)));
  for (int q = 0; q < count; ++q) {
    const float* v = &quads[std::size_t(q) * 16];  // 4 vertices of x, y, z, colour; v[0..1] and v[8..9] are corners
    fill(image, x + int(v[0] * scale), y + int(v[1] * scale), x + int(v[8] * scale), y + int(v[9] * scale));
  }
}

std::string encode_png(const Image& image) {
  std::string png;
  auto sink = [](void* context, void* data, int size) { static_cast<std::string*>(context)->append(static_cast<char*>(data), std::size_t(size)); };
  if (!stbi_write_png_to_func(sink, &png, image.width, image.height, image.channels(), image.data.data(),
                              image.width * image.channels()))
    throw std::runtime_error("cannot encode a PNG image");
  return png;
}

bool is_jpeg_name(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg";
}

}  // namespace bulkhead
