// Finding control tokens written literally in text ("<s>", "<|im_end|>") for
// Tokenizer::encode_with_specials. Internal to engine/text.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sbits::text_detail {

class SpecialTokenMatcher {
 public:
  SpecialTokenMatcher() = default;
  // (literal text, id) pairs; empty literals are ignored. When two entries share a literal the
  // lower id wins.
  explicit SpecialTokenMatcher(std::vector<std::pair<std::string, int32_t>> specials);

  // Splits `text` left to right: at each position the longest literal that starts there is a
  // special token; the text between specials goes to on_text (never empty). Leftmost-longest
  // differs from llama.cpp (which places the longest literals first, anywhere in the text) only
  // when two literals overlap, e.g. "ab" and "bcd" in "abcd"; no real vocabulary has that.
  void split(std::string_view text, const std::function<void(std::string_view)>& on_text,
             const std::function<void(int32_t)>& on_special) const;

  bool empty() const { return specials_.empty(); }

 private:
  // Sorted by literal, longest first within the same first byte, so a scan stops at the first hit.
  std::vector<std::pair<std::string, int32_t>> specials_;
  // For each first byte, the range of specials_ starting with it.
  uint32_t begin_[257] = {};
};

}  // namespace sbits::text_detail
