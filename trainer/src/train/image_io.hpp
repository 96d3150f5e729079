// image_io.hpp — 8-bit RGB images in and out of files (stb_image, libwebp), crop and resize.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <bulkhead/plugin.hpp>

namespace bulkhead {

// PIL's decompression-bomb limit, which EveryDream2 users know.
constexpr std::int64_t kDefaultMaxImagePixels = 89478485;

// Decodes a PNG, JPEG, BMP or WebP as RGB. Throws std::runtime_error with the reason when the file is not a
// readable image, or when its header claims more than max_pixels (checked before anything is decoded).
Image read_image(const std::filesystem::path& path, std::int64_t max_pixels = kDefaultMaxImagePixels);
// The largest centred square, resized to size x size.
Image center_crop_resize(const Image& image, int size);
// Any mode (L, RGB, RGBA) as RGB; alpha is dropped.
Image to_rgb(const Image& image);
// Nearest-neighbour enlargement by an integer factor (sample grids of tiny images).
Image upscale(const Image& image, int factor);
// Writes a PNG, or a JPEG when the name ends in .jpg or .jpeg; atomically. Throws IoError naming the file.
void write_image(const std::filesystem::path& path, const Image& image);
bool is_jpeg_name(const std::filesystem::path& path);
// Black text at (x, y) in stb's bitmap font, each font pixel scale x scale; ASCII only (any other
// character shows as one '?'). Clipped to the image.
void draw_text(Image& image, int x, int y, const std::string& text, int scale);
// The height draw_text needs at scale 1.
int text_height(const std::string& text);
// The PNG file's bytes, in memory.
std::string encode_png(const Image& image);

}  // namespace bulkhead
