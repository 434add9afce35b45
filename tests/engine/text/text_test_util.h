// Helpers shared by the engine/text tests.
#pragma once

#include <sentencepiece_processor.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/text/tokenizer.h"
#include "tests/test_data.h"

namespace sbits::test {

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The Llama 2 vocabulary (BOS 1, EOS 2), loaded once per test binary.
inline const Tokenizer& llama2_tokenizer() {
  static const std::unique_ptr<Tokenizer> tok =
      Tokenizer::create("sentencepiece", read_bytes(data_path("tokenizers/llama2_tokenizer.model")), 1, 2);
  return *tok;
}

// libsentencepiece itself, for reference answers; one processor per model file.
inline const sentencepiece::SentencePieceProcessor& reference_sp(const std::string& rel_path) {
  static std::map<std::string, std::unique_ptr<sentencepiece::SentencePieceProcessor>> loaded;
  auto& sp = loaded[rel_path];
  if (!sp) {
    sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
    auto status = sp->Load(data_path(rel_path));
    if (!status.ok()) throw std::runtime_error("cannot load " + rel_path + ": " + status.ToString());
  }
  return *sp;
}

inline std::vector<int32_t> sp_encode(const sentencepiece::SentencePieceProcessor& sp, const std::string& text) {
  std::vector<int> ids;
  if (!sp.Encode(text, &ids).ok()) throw std::runtime_error("sentencepiece Encode failed");
  return {ids.begin(), ids.end()};
}

inline std::string sp_decode(const sentencepiece::SentencePieceProcessor& sp, std::span<const int32_t> ids) {
  std::string out;
  if (!sp.Decode(std::vector<int>(ids.begin(), ids.end()), &out).ok()) throw std::runtime_error("Decode failed");
  return out;
}

// Independent of engine/text/utf8.cpp on purpose: decodes each code point from its bit
// pattern and rejects overlong forms, surrogates and values above U+10FFFF.
inline bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<uint8_t>(s[i]);
    int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + static_cast<size_t>(len) > s.size()) return false;
    uint32_t cp = len == 1 ? b : b & (0x7F >> len);
    for (int k = 1; k < len; ++k) {
      const auto c = static_cast<uint8_t>(s[i + static_cast<size_t>(k)]);
      if ((c >> 6) != 2) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += static_cast<size_t>(len);
  }
  return true;
}

}  // namespace sbits::test
