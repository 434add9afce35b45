#include "engine/text/special_tokens.h"

#include <algorithm>

namespace sbits::text_detail {

SpecialTokenMatcher::SpecialTokenMatcher(std::vector<std::pair<std::string, int32_t>> specials) {
  std::erase_if(specials, [](const auto& s) { return s.first.empty(); });
  // First byte ascending, then longest first, then lowest id first (so duplicates keep the lowest).
  std::sort(specials.begin(), specials.end(), [](const auto& a, const auto& b) {
    const auto a0 = static_cast<uint8_t>(a.first[0]), b0 = static_cast<uint8_t>(b.first[0]);
    if (a0 != b0) return a0 < b0;
    if (a.first.size() != b.first.size()) return a.first.size() > b.first.size();
    if (a.first != b.first) return a.first < b.first;
    return a.second < b.second;
  });
  specials_ = std::move(specials);
  size_t i = 0;
  for (int byte = 0; byte <= 256; ++byte) {
    while (i < specials_.size() && static_cast<uint8_t>(specials_[i].first[0]) < byte) ++i;
    begin_[byte] = static_cast<uint32_t>(i);
  }
}

void SpecialTokenMatcher::split(std::string_view text, const std::function<void(std::string_view)>& on_text,
                                const std::function<void(int32_t)>& on_special) const {
  size_t plain_start = 0, pos = 0;
  while (pos < text.size()) {
    const auto b = static_cast<uint8_t>(text[pos]);
    const std::pair<std::string, int32_t>* hit = nullptr;
    for (uint32_t i = begin_[b]; i < begin_[b + 1]; ++i) {
      if (text.substr(pos).starts_with(specials_[i].first)) {
        hit = &specials_[i];
        break;  // longest first within this first byte
      }
    }
    if (!hit) {
      ++pos;
      continue;
    }
    if (pos > plain_start) on_text(text.substr(plain_start, pos - plain_start));
    on_special(hit->second);
    pos += hit->first.size();
    plain_start = pos;
  }
  if (pos > plain_start) on_text(text.substr(plain_start, pos - plain_start));
}

}  // namespace sbits::text_detail
