// UTF-8 well-formedness checks shared by the detokenizers. Internal to engine/text.
//
// Well-formed means Unicode's Table 3-7: no overlong forms, no surrogates (U+D800..U+DFFF),
// nothing above U+10FFFF. Ill-formed bytes are replaced with U+FFFD one byte at a time, which
// is what SentencePiece's decoder does for byte pieces, so that streamed and whole-sequence
// decoding agree with it.
#pragma once

#include <string>
#include <string_view>

namespace sbits::text_detail {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Classifies the bytes at the start of `s` (which must not be empty):
//   1..4  a well-formed character of that many bytes starts s;
//   0     s is a proper prefix of a well-formed character: more bytes could complete it;
//   -1    s[0] cannot start a well-formed character given the bytes that follow it.
int utf8_classify(std::string_view s);

// Appends to `out` the well-formed characters at the front of `bytes`, replacing each byte that
// starts no well-formed character with U+FFFD. When `final` is false an incomplete character at
// the very end is left alone; the return value is the number of bytes consumed.
size_t utf8_append_sanitized(std::string_view bytes, bool final, std::string& out);

// The whole of `bytes` with every ill-formed byte replaced by U+FFFD.
std::string utf8_sanitize(std::string_view bytes);

}  // namespace sbits::text_detail
