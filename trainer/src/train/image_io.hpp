// image_io.hpp — 8-bit RGB images in and out of files (stb_image), crop and resize.
#pragma once

#include <filesystem>

#include <bulkhead/plugin.hpp>

namespace bulkhead {

// Decodes a PNG or JPEG as RGB. Throws std::runtime_error with stb's reason when the file is not a readable image.
Image read_image(const std::filesystem::path& path);
// The largest centred square, resized to size x size.
Image center_crop_resize(const Image& image, int size);
// Any mode (L, RGB, RGBA) as RGB; alpha is dropped.
Image to_rgb(const Image& image);
// Nearest-neighbour enlargement by an integer factor (sample grids of tiny images).
Image upscale(const Image& image, int factor);
// Writes a PNG; throws on failure.
void write_png(const std::filesystem::path& path, const Image& image);

}  // namespace bulkhead
