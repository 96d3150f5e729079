// text.hpp — captions are UTF-8; what is not valid UTF-8 is repaired once, where it enters.
#pragma once

#include <string>
#include <vector>

namespace bulkhead {

// Whether text is valid UTF-8 as it is.
bool valid_utf8(const std::string& text);
// Each invalid byte sequence replaced by U+FFFD (the replacement character); valid text is returned as is.
std::string repair_utf8(const std::string& text);
// The words of a caption by Unicode's word rules (letters and digits of every script; Japanese and
// Chinese by dictionary), NFKC-normalised and case-folded: "Café", "CAFÉ" and a decomposed "café" are one word.
std::vector<std::string> unicode_words(const std::string& text);

}  // namespace bulkhead
