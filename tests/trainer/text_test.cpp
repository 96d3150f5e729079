// Captions are UTF-8 end to end: words of every script reach the vocabulary, invalid UTF-8 is
// repaired and counted, and `bulkhead sample` understands prompts in those scripts.
#include "test_support.hpp"
#include "train/text.hpp"

namespace bulkhead::testing {
namespace {

TEST(Text, WordsOfEveryScriptCaseFolded) {
  EXPECT_EQ(unicode_words("une fille au Café à Paris"),
            (std::vector<std::string>{"une", "fille", "au", "café", "à", "paris"}));
  EXPECT_EQ(unicode_words("Cafe\xCC\x81"), std::vector<std::string>{"café"}) << "a decomposed é is the same word";
  EXPECT_EQ(unicode_words("ΜΙΑ γάτα, 2 σκύλοι"), (std::vector<std::string>{"μια", "γάτα", "2", "σκύλοι"}));
  EXPECT_EQ(unicode_words("黒い猫"), (std::vector<std::string>{"黒い", "猫"})) << "Japanese by dictionary";
}

TEST(Text, InvalidUtf8IsRepairedNotDropped) {
  EXPECT_TRUE(valid_utf8("café"));
  EXPECT_FALSE(valid_utf8("caf\xE9 noir"));  // Latin-1, not UTF-8
  EXPECT_EQ(repair_utf8("caf\xE9 noir"), "caf\xEF\xBF\xBD noir");
  EXPECT_EQ(unicode_words("caf\xE9 noir"), (std::vector<std::string>{"caf", "noir"}));
}

TEST(Text, FrenchJapaneseGreekCaptionsTrainAndSample) {
  auto dir = scratch("cmd"), data = scratch("data");
  const std::vector<std::string> captions = {"une fille au café à Paris", "黒い猫が座っている", "μια γάτα στο σπίτι",
                                             "caf\xE9 cr\xE8me"};
  for (std::size_t i = 0; i < captions.size(); ++i) {
    write_test_png(data / ("img" + std::to_string(i) + ".png"), std::uint8_t(60 * i));
    std::ofstream(data / ("img" + std::to_string(i) + ".txt")) << captions[i];
  }
  Json config = tiny_config(dir / "run", 1);
  config["data_root"] = data.string();
  config["batch_size"] = 2;
  config["validation_split"] = 0;
  std::ofstream(dir / "train.json") << config.dump();
  ASSERT_EQ(run_bulkhead({"train", "--config", (dir / "train.json").string()}, dir / "train.txt"), 0)
      << read_text(dir / "train.txt");
  const std::string log = read_text(dir / "run" / "train.log");
  EXPECT_NE(log.find("1 caption(s) were not valid UTF-8"), std::string::npos) << log;
  EXPECT_NE(log.find((data / "img3.png").string()), std::string::npos) << "names the file";

  const Json words = Checkpoint(resolve_checkpoint_path(dir / "run")).info().vocab.to_json();
  for (const char* word : {"café", "à", "paris", "猫", "黒い", "γάτα", "σπίτι"})
    EXPECT_NE(std::find(words.begin(), words.end(), word), words.end()) << word << " in " << words.dump();

  for (const char* prompt : {"café à Paris", "黒い猫", "γάτα"}) {
    EXPECT_EQ(run_bulkhead({"sample", "--checkpoint", (dir / "run").string(), "--prompt", prompt, "--out",
                            (dir / "out.png").string(), "--steps", "2"},
                           dir / "sample.txt"),
              0);
    EXPECT_EQ(read_text(dir / "sample.txt").find("not in the model's vocabulary"), std::string::npos) << prompt;
  }
  EXPECT_EQ(run_bulkhead({"sample", "--checkpoint", (dir / "run").string(), "--prompt", "犬", "--out",
                          (dir / "out.png").string(), "--steps", "2"},
                         dir / "sample.txt"),
            0);
  EXPECT_NE(read_text(dir / "sample.txt").find("\"犬\" is not in the model's vocabulary"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::testing
