// data_folder.hpp — an image folder read by EveryDream2's rules, each difference said once.
//
//   FolderScan scan = scan_folder("data", seed);   // files and captions; nothing decoded yet
//
// EveryDream2's rules, as Bulkhead reads them:
// - images: .png .jpg .jpeg .jfif .bmp .webp; names starting with "." (files and folders) are skipped;
// - an image's caption: <stem>.txt, else <stem>.caption, else <stem>.yaml/.yml/.json (main_prompt or
//   caption, plus tags), else the file name up to its first "_" ("john smith_999.jpg" -> "john smith");
// - a folder's multiply.txt repeats its images (1.5: every image once, half of them twice);
// - global.yaml (its folder and every folder below) and local.yaml (its folder only): multiply, tags
//   added to every caption, and main_prompt for images without a caption of their own.
// What EveryDream2 does with these files that Bulkhead does not (flip_p, tag weights, ...) is in notes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace bulkhead {

struct FolderItem {
  std::filesystem::path image;
  std::string caption;         // UTF-8 as written (repaired later if invalid)
  std::string caption_source;  // ".txt", ".caption", ".yaml", ".json", "file name" or a folder's main_prompt
  int copies = 1;              // times per epoch (multiply)
};

struct FolderScan {
  std::vector<FolderItem> items;                       // in sorted path order
  std::map<std::string, int> caption_sources;          // source -> images
  std::vector<std::filesystem::path> hidden;           // skipped: names starting with "."
  std::vector<std::string> notes;                      // what Bulkhead does differently, once each
};

bool is_image_file(const std::filesystem::path& path);

// Throws DataError when root is not a folder, or a multiply.txt or .yaml/.json file cannot be read.
FolderScan scan_folder(const std::filesystem::path& root, std::uint64_t seed);

}  // namespace bulkhead
