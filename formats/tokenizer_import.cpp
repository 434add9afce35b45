// Recognising tokenizer files by content (SBITS.md "Importers"): a SentencePiece ModelProto is
// a protobuf message whose field 1 repeats once per piece; a llama2.c tokenizer.bin is
// int32 max_token_length then {f32 score, int32 len, len bytes} per token, to the end.
#include <cmath>
#include <cstring>

#include "formats/bytes.h"
#include "formats/import_common.h"

namespace sbits::detail {
namespace {

bool read_varint(std::span<const uint8_t> b, size_t& i, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (i >= b.size()) return false;
    uint8_t c = b[i++];
    v |= static_cast<uint64_t>(c & 0x7f) << shift;
    if (!(c & 0x80)) return true;
  }
  return false;
}

// Walks the top-level protobuf fields; returns the number of pieces (field 1, length-
// delimited), or 0 when the bytes are not a well-formed message that starts with a piece.
uint64_t sentencepiece_pieces(std::span<const uint8_t> b) {
  if (b.empty() || b[0] != 0x0a) return 0;
  size_t i = 0;
  uint64_t pieces = 0;
  while (i < b.size()) {
    uint64_t tag, v;
    if (!read_varint(b, i, tag) || (tag >> 3) == 0) return 0;
    switch (tag & 7) {
      case 0:
        if (!read_varint(b, i, v)) return 0;
        break;
      case 1:
        if (b.size() - i < 8) return 0;
        i += 8;
        break;
      case 2:
        if (!read_varint(b, i, v) || v > b.size() - i) return 0;
        i += v;
        pieces += (tag >> 3) == 1;
        break;
      case 5:
        if (b.size() - i < 4) return 0;
        i += 4;
        break;
      default:
        return 0;
    }
  }
  return pieces;
}

// Returns the number of tokens of a llama2.c tokenizer.bin, or 0 if the bytes are not one.
uint64_t llama2c_tokens(std::span<const uint8_t> b) {
  if (b.size() < 4) return 0;
  int32_t max_len;
  std::memcpy(&max_len, b.data(), 4);
  if (max_len < 1 || max_len > 4096) return 0;
  size_t i = 4;
  uint64_t n = 0;
  while (i < b.size()) {
    if (b.size() - i < 8) return 0;
    float score;
    int32_t len;
    std::memcpy(&score, b.data() + i, 4);
    std::memcpy(&len, b.data() + i + 4, 4);
    i += 8;
    if (!std::isfinite(score) || len < 0 || len > max_len || static_cast<size_t>(len) > b.size() - i) return 0;
    i += static_cast<size_t>(len);
    ++n;
  }
  return n;
}

}  // namespace

TokenizerData load_tokenizer(const std::string& path, uint64_t vocab_size) {
  std::string raw = read_small_file(path, 64u << 20);
  TokenizerData t;
  t.bytes.assign(raw.begin(), raw.end());
  std::span<const uint8_t> b(t.bytes);
  uint64_t sp = sentencepiece_pieces(b), l2 = llama2c_tokens(b);
  if (sp && (!l2 || l2 != vocab_size)) {  // both parse only by accident; prefer the vocab match
    t.kind = "sentencepiece";
    t.pieces = sp;
  } else if (l2) {
    t.kind = "llama2c";
    t.pieces = l2;
  } else {
    throw FormatError(path + ": not a tokenizer: expected a SentencePiece .model or a llama2.c tokenizer.bin");
  }
  if (t.pieces > vocab_size) {
    throw FormatError(path + ": tokenizer has " + std::to_string(t.pieces) + " pieces, more than the model's vocab_size " +
                      std::to_string(vocab_size));
  }
  return t;
}

}  // namespace sbits::detail
