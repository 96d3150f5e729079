#include "train/vocab.hpp"

#include <algorithm>
#include <set>

#include "train/text.hpp"

namespace bulkhead {

std::vector<std::string> Vocabulary::split_words(const std::string& caption) { return unicode_words(caption); }

Vocabulary Vocabulary::build(const std::vector<std::string>& captions) {
  std::set<std::string> unique;
  for (auto& caption : captions)
    for (auto& word : split_words(caption)) unique.insert(word);
  Vocabulary vocab;
  vocab.words_.assign(unique.begin(), unique.end());
  vocab.index();
  return vocab;
}

Vocabulary Vocabulary::from_json(const nlohmann::json& words) {
  Vocabulary vocab;
  vocab.words_ = words.get<std::vector<std::string>>();
  vocab.index();
  return vocab;
}

nlohmann::json Vocabulary::to_json() const { return words_; }

// The special tokens have ids too: a plugin may name one (an add_tokens init_from "<unknown>").
void Vocabulary::index() {
  ids_ = {{"<pad>", kPad}, {"<start>", kStart}, {"<unknown>", kUnknown}};
  for (std::size_t i = 0; i < words_.size(); ++i) ids_[words_[i]] = static_cast<std::int64_t>(i) + 3;
}

std::optional<std::int64_t> Vocabulary::id(const std::string& word) const {
  auto found = ids_.find(word);
  if (found == ids_.end()) return std::nullopt;
  return found->second;
}

std::int64_t Vocabulary::add(const std::string& word) {
  if (auto known = id(word)) return *known;
  words_.push_back(word);
  return ids_[word] = static_cast<std::int64_t>(words_.size()) + 2;
}

std::vector<std::string> Vocabulary::tokens() const {
  std::vector<std::string> tokens = {"<pad>", "<start>", "<unknown>"};
  tokens.insert(tokens.end(), words_.begin(), words_.end());
  return tokens;
}

std::vector<std::int64_t> Vocabulary::encode(const std::string& caption, int length) const {
  std::vector<std::int64_t> ids(static_cast<std::size_t>(length), kPad);
  ids[0] = kStart;
  std::size_t next = 1;
  for (auto& word : split_words(caption)) {
    if (next == ids.size()) break;
    auto found = ids_.find(word);
    ids[next++] = found == ids_.end() ? kUnknown : found->second;
  }
  return ids;
}

std::vector<std::string> Vocabulary::unknown_words(const std::string& caption) const {
  std::vector<std::string> unknown;
  for (auto& word : split_words(caption))
    if (!ids_.count(word) && std::find(unknown.begin(), unknown.end(), word) == unknown.end())
      unknown.push_back(word);
  return unknown;
}

}  // namespace bulkhead
