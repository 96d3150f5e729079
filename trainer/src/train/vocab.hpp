// vocab.hpp — captions to token ids: Unicode words, case-folded, a vocabulary built from the training captions.
//
//   Vocabulary vocab = Vocabulary::build(captions);
//   std::vector<std::int64_t> ids = vocab.encode("a red circle", 24);  // <start> a red circle <pad>...
//
// Id 0 pads, id 1 starts every caption (so an empty caption still has one
// token to attend to), id 2 stands for words not in the vocabulary. The word
// list is saved in every checkpoint: a model only understands its own ids.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace bulkhead {

class Vocabulary {
 public:
  static constexpr std::int64_t kPad = 0;
  static constexpr std::int64_t kStart = 1;
  static constexpr std::int64_t kUnknown = 2;

  // Words in sorted order, so the ids do not depend on the order of the data.
  static Vocabulary build(const std::vector<std::string>& captions);
  static Vocabulary from_json(const nlohmann::json& words);
  nlohmann::json to_json() const;

  // Exactly `length` ids: <start>, the words (cut to fit), then padding.
  std::vector<std::int64_t> encode(const std::string& caption, int length) const;
  // The words of a caption that the vocabulary lacks (each once, in order).
  std::vector<std::string> unknown_words(const std::string& caption) const;
  std::size_t size() const { return words_.size() + 3; }
  std::optional<std::int64_t> id(const std::string& word) const;
  // Appends a word, a token a plugin teaches the model (textual inversion); returns its id.
  // Ids already given never change, so a trained model keeps understanding them.
  std::int64_t add(const std::string& word);
  // Every token by id: "<pad>", "<start>", "<unknown>", then the words.
  std::vector<std::string> tokens() const;

  // Words by Unicode's rules, in every script (see unicode_words).
  static std::vector<std::string> split_words(const std::string& caption);

 private:
  std::vector<std::string> words_;
  std::unordered_map<std::string, std::int64_t> ids_;
  void index();
};

}  // namespace bulkhead
