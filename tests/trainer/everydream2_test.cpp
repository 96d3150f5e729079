// An EveryDream2 data folder and train.json: its caption rules, sidecars, multiply, local/global
// yaml, .webp/.bmp, hidden folders skipped, sample_steps as "every N steps", and every difference
// said once.
#include <webp/encode.h>

#include <stb/stb_image_write.h>

#include "test_support.hpp"
#include "train/data_folder.hpp"

namespace bulkhead::testing {
namespace {

Image solid(std::uint8_t red) {
  Image image;
  image.width = image.height = 16;
  image.data.assign(16 * 16 * 3, red);
  return image;
}

void write_webp(const fs::path& path, const Image& image) {
  std::uint8_t* bytes = nullptr;
  const std::size_t size = WebPEncodeLosslessRGB(image.data.data(), image.width, image.height, image.width * 3, &bytes);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<char*>(bytes), std::streamsize(size));
  WebPFree(bytes);
}

// Every convention, one file each.
fs::path make_everydream2_folder(const fs::path& data) {
  write_image(data / "john smith on a boat_999.jpg", solid(10));  // caption: the name up to the first _
  stbi_write_bmp((data / "cat.bmp").c_str(), 16, 16, 3, solid(40).data.data());
  std::ofstream(data / "cat.caption") << "a cat, sitting\n";
  write_webp(data / "dog.webp", solid(70));
  std::ofstream(data / "dog.txt") << "a dog";
  write_image(data / "bird.png", solid(100));
  std::ofstream(data / "bird.yaml") << "main_prompt: a bird\ntags:\n  - tag: blue\n    weight: 1.5\n  - small\nflip_p: 0.5\n";
  std::ofstream(data / "global.yaml") << "tags:\n  - photo\n";
  fs::create_directories(data / "sub");
  write_image(data / "sub" / "red_1.png", solid(130));
  std::ofstream(data / "sub" / "multiply.txt") << "2\n";
  std::ofstream(data / "sub" / "local.yaml") << "tags: [studio]\n";
  fs::create_directories(data / ".thumbnails");
  write_image(data / ".thumbnails" / "bird.png", solid(160));
  write_image(data / ".hidden.png", solid(190));
  return data;
}

TEST(EveryDream2, DataFolderConventions) {
  auto data = make_everydream2_folder(scratch("data"));
  const FolderScan scan = scan_folder(data, 555);
  std::map<std::string, std::pair<std::string, int>> captions;
  for (auto& item : scan.items) captions[fs::relative(item.image, data).string()] = {item.caption, item.copies};
  const std::map<std::string, std::pair<std::string, int>> expected = {
      {"john smith on a boat_999.jpg", {"john smith on a boat, photo", 1}},
      {"cat.bmp", {"a cat, sitting, photo", 1}},
      {"dog.webp", {"a dog, photo", 1}},
      {"bird.png", {"a bird, photo, blue, small", 1}},
      {"sub/red_1.png", {"red, photo, studio", 2}},
  };
  EXPECT_EQ(captions, expected);
  EXPECT_EQ(scan.hidden.size(), 2u) << ".thumbnails and .hidden.png";
}

TEST(EveryDream2, TrainJsonAndFolderThroughTheProgram) {
  auto dir = scratch("cmd");
  auto data = make_everydream2_folder(scratch("data"));
  Json config = tiny_config(dir / "run", 1);
  config["data_root"] = data.string();
  config["batch_size"] = 2;
  config["validation_split"] = 0;
  config["sample_steps"] = 2;         // EveryDream2's meaning: samples every 2 steps
  config["sample_prompts"] = "prompts.txt";  // EveryDream2's prompt file, beside train.json
  config["clip_skip"] = 2;            // EveryDream2 keys Bulkhead does not use
  config["ema_decay_rate"] = 0.999;
  std::ofstream(dir / "prompts.txt") << "a dog\n\na bird, photo\n";
  std::ofstream(dir / "train.json") << config.dump();
  ASSERT_EQ(run_bulkhead({"train", "--config", (dir / "train.json").string()}, dir / "output.txt"), 0)
      << read_text(dir / "output.txt");

  const std::string log = read_text(dir / "run" / "train.log");
  for (const char* line : {"captions: 1 from .caption, 1 from .txt, 1 from .yaml, 2 from file name",
                           "skipped " /* hidden */, "flip_p (first seen in", "tag weights (first seen in",
                           "EveryDream2's \"clip_skip\" is not used by Bulkhead: no CLIP text encoder",
                           "EveryDream2's \"ema_decay_rate\" is not used by Bulkhead: no EMA model"})
    EXPECT_NE(log.find(line), std::string::npos) << line << "\n" << log;
  EXPECT_EQ(read_metrics(dir / "run").size(), 3u) << "6 examples (red twice), batches of 2";
  for (const char* sample : {"step-000002-gs000002.png", "step-000002-gs000002-p00.png",
                             "step-000002-gs000002-p01.png", "final-gs000003.png"})
    EXPECT_TRUE(fs::exists(dir / "run" / "samples" / sample)) << sample;
  EXPECT_EQ(read_text(dir / "run" / "samples" / "final-gs000003.txt"), "a dog\na bird, photo\n");
  EXPECT_EQ(read_json(dir / "run" / "config.json")["sample_prompts"], Json({"a dog", "a bird, photo"}));
}

}  // namespace
}  // namespace bulkhead::testing
