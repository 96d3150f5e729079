#include "train/text.hpp"

#include <memory>
#include <stdexcept>

#include <unicode/brkiter.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

namespace bulkhead {
namespace {

void check(UErrorCode status, const char* what) {
  if (U_FAILURE(status)) throw std::runtime_error(std::string(what) + ": " + u_errorName(status));
}

// Break iterators are costly to create and not thread-safe: one per loader thread, reused.
icu::BreakIterator& word_breaks() {
  thread_local std::unique_ptr<icu::BreakIterator> iterator = [] {
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<icu::BreakIterator> created(icu::BreakIterator::createWordInstance(icu::Locale::getRoot(), status));
    check(status, "ICU word break iterator");
    return created;
  }();
  return *iterator;
}

}  // namespace

bool valid_utf8(const std::string& text) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  const auto length = static_cast<int32_t>(text.size());
  for (int32_t i = 0; i < length;) {
    UChar32 c;
    U8_NEXT(bytes, i, length, c);
    if (c < 0) return false;
  }
  return true;
}

std::string repair_utf8(const std::string& text) {
  if (valid_utf8(text)) return text;
  std::string repaired;
  icu::UnicodeString::fromUTF8(text).toUTF8String(repaired);  // ICU reads each bad sequence as U+FFFD
  return repaired;
}

std::vector<std::string> unicode_words(const std::string& text) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* fold = icu::Normalizer2::getNFKCCasefoldInstance(status);
  check(status, "ICU NFKC_Casefold");
  const icu::UnicodeString folded = fold->normalize(icu::UnicodeString::fromUTF8(text), status);
  check(status, "ICU NFKC_Casefold");
  icu::BreakIterator& breaks = word_breaks();
  breaks.setText(folded);
  std::vector<std::string> words;
  for (int32_t start = breaks.first(), end = breaks.next(); end != icu::BreakIterator::DONE;
       start = end, end = breaks.next()) {
    if (breaks.getRuleStatus() == UBRK_WORD_NONE) continue;  // spaces and punctuation
    std::string word;
    folded.tempSubStringBetween(start, end).toUTF8String(word);
    words.push_back(std::move(word));
  }
  return words;
}

}  // namespace bulkhead
