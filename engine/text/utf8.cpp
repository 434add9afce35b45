#include "engine/text/utf8.h"

#include <cstdint>

namespace sbits::text_detail {

int utf8_classify(std::string_view s) {
  const auto b0 = static_cast<uint8_t>(s[0]);
  if (b0 < 0x80) return 1;
  // The length, and the range the second byte must fall in (Table 3-7): the narrower ranges
  // after E0, ED, F0 and F4 are what exclude overlongs, surrogates and code points > U+10FFFF.
  int len = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return -1;  // a continuation byte, C0/C1 (always overlong) or F5..FF
  }
  for (int i = 1; i < len; ++i) {
    if (static_cast<size_t>(i) >= s.size()) return 0;
    const auto b = static_cast<uint8_t>(s[static_cast<size_t>(i)]);
    const uint8_t min = i == 1 ? lo : 0x80, max = i == 1 ? hi : 0xBF;
    if (b < min || b > max) return -1;
  }
  return len;
}

size_t utf8_append_sanitized(std::string_view bytes, bool final, std::string& out) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    const int n = utf8_classify(bytes.substr(pos));
    if (n > 0) {
      out.append(bytes.substr(pos, static_cast<size_t>(n)));
      pos += static_cast<size_t>(n);
    } else if (n == 0 && !final) {
      break;  // may still be completed by the next token's bytes
    } else {
      out.append(kReplacementChar);
      pos += 1;
    }
  }
  return pos;
}

std::string utf8_sanitize(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  utf8_append_sanitized(bytes, /*final=*/true, out);
  return out;
}

}  // namespace sbits::text_detail
