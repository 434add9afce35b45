// Tokenizer kind "llama2c": the tokenizer.bin of Karpathy's llama2.c, with its encode and decode.
//
// File layout (little-endian, no magic, no count: tokens run to the end of the bytes):
//   int32 max_token_length
//   per token: float32 score, int32 len, len bytes of piece
// llama2.c's export writes pieces with "▁" already turned into " ", byte pieces as the text
// "<0x0A>", and BOS/EOS as "\n<s>\n" / "\n</s>\n".
//
// encode follows run.c's encode(): a dummy-prefix " " token, then one symbol per UTF-8 character
// (a lead byte and up to three continuation bytes, exactly as run.c chunks them) looked up in the
// vocabulary, byte fallback for characters that are not pieces, then repeatedly merge the
// adjacent pair whose concatenation is a piece with the highest score (leftmost on ties; scores
// at or below -1e10 never merge, as run.c's initial best_score). run.c rescans all pairs per
// merge (quadratic); we keep candidates in a heap, which picks the same pair every step.
// Deliberate differences from run.c, none of which changes ids for text run.c handles:
//   - byte fallback looks up the piece "<0xXX>" instead of assuming id byte+3 (the same id in
//     every llama2.c export; a vocabulary without byte pieces gets <unk> rather than a wrong id);
//   - embedded NUL bytes are encoded (as <0x00>) instead of ending the text;
//   - a missing " " piece falls back to its byte piece instead of emitting id -1.
// decode: BOS/EOS (and any "<s>"/"</s>" piece) are control tokens and produce nothing, where
// run.c would print "\n</s>\n" (its loop stops before that happens); "<unk>" decodes as
// SentencePiece's " ⁇ " so that both kinds agree on the same vocabulary.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/text/special_tokens.h"
#include "engine/text/tokenizer_impl.h"
#include "engine/text/utf8.h"

namespace sbits::text_detail {
namespace {

constexpr const char* kKind = "llama2c";
constexpr std::string_view kUnknownSurface = " \xE2\x81\x87 ";  // SentencePiece's " ⁇ "
constexpr float kNoMergeScore = -1e10f;                          // run.c's initial best_score

enum class PieceKind : uint8_t { normal, control, unknown, byte };

struct Vocab {
  int32_t max_token_length = 0;
  std::vector<std::string> pieces;
  std::vector<float> scores;
};

// Reads little-endian fields with bounds checks; errors name the offset and what was expected.
class Cursor {
 public:
  explicit Cursor(std::span<const uint8_t> d) : d_(d) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return d_.size() - pos_; }
  uint32_t u32(const char* what) {
    need(4, what);
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | d_[pos_ + static_cast<size_t>(i)];
    pos_ += 4;
    return v;
  }
  std::string bytes(size_t n, const char* what) {
    need(n, what);
    std::string s(reinterpret_cast<const char*>(d_.data() + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  void need(size_t n, const char* what) const {
    if (n > remaining()) {
      throw TokenizerError(fmt::format("llama2c tokenizer: truncated {} at offset {}: need {} bytes, {} left "
                                       "(file of {} bytes)", what, pos_, n, remaining(), d_.size()));
    }
  }
  std::span<const uint8_t> d_;
  size_t pos_ = 0;
};

Vocab parse_vocab(std::span<const uint8_t> data) {
  Cursor c(data);
  Vocab v;
  v.max_token_length = static_cast<int32_t>(c.u32("header (int32 max_token_length)"));
  if (v.max_token_length <= 0) {
    throw TokenizerError(fmt::format("llama2c tokenizer: max_token_length is {}, expected > 0 "
                                     "(is this a llama2.c tokenizer.bin?)", v.max_token_length));
  }
  while (c.remaining() > 0) {
    const size_t at = c.pos();
    uint32_t score_bits = c.u32("token entry (float32 score)");
    float score;
    std::memcpy(&score, &score_bits, sizeof score);
    const auto len = static_cast<int32_t>(c.u32("token entry (int32 length)"));
    if (len < 0 || len > v.max_token_length) {
      throw TokenizerError(fmt::format("llama2c tokenizer: token {} at offset {} has length {}, expected 0..{} "
                                       "(the header's max_token_length)", v.pieces.size(), at, len,
                                       v.max_token_length));
    }
    v.pieces.push_back(c.bytes(static_cast<size_t>(len), "token piece"));
    v.scores.push_back(score);
    if (v.pieces.size() > static_cast<size_t>(INT32_MAX)) throw TokenizerError("llama2c tokenizer: too many tokens");
  }
  if (v.pieces.empty()) throw TokenizerError("llama2c tokenizer: the file holds a header but no tokens");
  return v;
}

// "\n<s>\n" -> "<s>": the literal a user writes for the token.
std::string_view trim_newlines(std::string_view s) {
  while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}

int byte_piece_value(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return -1;
  int v = 0;
  for (char ch : piece.substr(3, 2)) {
    const int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

class Llama2cTokenizer final : public Tokenizer {
 public:
  Llama2cTokenizer(Vocab v, int32_t bos_id, int32_t eos_id) : Tokenizer(bos_id, eos_id), v_(std::move(v)) {
    check_special_ids(kKind);
    build_tables();
  }

  int32_t vocab_size() const override { return static_cast<int32_t>(v_.pieces.size()); }

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    std::vector<int32_t> ids;
    if (add_bos && bos_id() >= 0) ids.push_back(bos_id());
    append_plain(text, ids);
    return ids;
  }

  std::vector<int32_t> encode_with_specials(std::string_view text, bool add_bos) const override {
    std::vector<int32_t> ids;
    if (add_bos && bos_id() >= 0) ids.push_back(bos_id());
    specials_.split(
        text, [&](std::string_view plain) { append_plain(plain, ids); }, [&](int32_t id) { ids.push_back(id); });
    return ids;
  }

  std::string token_bytes(int32_t id, int32_t prev) const override {
    check_id(id, "token_bytes");
    std::string t = surface(id);
    // run.c: "following BOS (1) token, sentencepiece decoder strips any leading whitespace"
    if (kind_[static_cast<size_t>(id)] == PieceKind::normal && prev >= 0 && prev == bos_id() && t.starts_with(' '))
      t.erase(0, 1);
    return t;
  }

  std::string decode(std::span<const int32_t> ids) const override {
    std::string raw;
    bool at_start = true;  // SentencePiece drops the leading space of the first non-control piece
    for (int32_t id : ids) {
      check_id(id, "decode");
      if (kind_[static_cast<size_t>(id)] == PieceKind::control) continue;
      std::string t = surface(id);
      if (at_start && kind_[static_cast<size_t>(id)] == PieceKind::normal && t.starts_with(' ')) t.erase(0, 1);
      at_start = false;
      raw += t;
    }
    return utf8_sanitize(raw);
  }

  bool is_control(int32_t id) const override {
    return id >= 0 && id < vocab_size() && kind_[static_cast<size_t>(id)] == PieceKind::control;
  }

  std::string piece(int32_t id) const override {
    check_id(id, "piece");
    return v_.pieces[static_cast<size_t>(id)];
  }

 private:
  std::string surface(int32_t id) const {
    const auto i = static_cast<size_t>(id);
    switch (kind_[i]) {
      case PieceKind::control: return {};
      case PieceKind::unknown: return std::string(kUnknownSurface);
      case PieceKind::byte: return std::string(1, static_cast<char>(byte_piece_value(v_.pieces[i])));
      case PieceKind::normal: break;
    }
    return v_.pieces[i];
  }

  void build_tables();
  int32_t lookup(std::string_view s) const {
    auto it = ids_.find(s);
    return it == ids_.end() ? -1 : it->second;
  }
  void append_symbols(std::string_view chunk, std::vector<int32_t>& syms) const;
  void append_plain(std::string_view text, std::vector<int32_t>& ids) const;
  void merge(std::vector<int32_t>& syms) const;

  Vocab v_;
  std::unordered_map<std::string_view, int32_t> ids_;  // piece -> lowest id with that piece
  std::vector<PieceKind> kind_;
  int32_t byte_ids_[256] = {};
  SpecialTokenMatcher specials_;
};

void Llama2cTokenizer::build_tables() {
  const auto n = v_.pieces.size();
  kind_.assign(n, PieceKind::normal);
  ids_.reserve(n);
  for (size_t i = 0; i < n; ++i) ids_.emplace(v_.pieces[i], static_cast<int32_t>(i));  // keeps the first

  int32_t unk = -1;
  std::vector<std::pair<std::string, int32_t>> specials;
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    const std::string_view literal = trim_newlines(v_.pieces[i]);
    if (literal == "<unk>") {
      kind_[i] = PieceKind::unknown;
      if (unk < 0) unk = id;
    } else if (literal == "<s>" || literal == "</s>" || id == bos_id() || id == eos_id()) {
      kind_[i] = PieceKind::control;
    } else if (byte_piece_value(v_.pieces[i]) >= 0) {
      kind_[i] = PieceKind::byte;
    }
    if (kind_[i] == PieceKind::control || kind_[i] == PieceKind::unknown) specials.emplace_back(literal, id);
  }
  for (int b = 0; b < 256; ++b) {
    const int32_t id = lookup(fmt::format("<0x{:02X}>", b));
    byte_ids_[b] = id >= 0 ? id : std::max(unk, 0);
  }
  specials_ = SpecialTokenMatcher(std::move(specials));
}

void Llama2cTokenizer::append_symbols(std::string_view chunk, std::vector<int32_t>& syms) const {
  if (const int32_t id = lookup(chunk); id >= 0) {
    syms.push_back(id);
    return;
  }
  for (char ch : chunk) syms.push_back(byte_ids_[static_cast<uint8_t>(ch)]);
}

void Llama2cTokenizer::append_plain(std::string_view text, std::vector<int32_t>& ids) const {
  if (text.empty()) return;  // run.c adds the dummy prefix only to non-empty text
  std::vector<int32_t> syms;
  syms.reserve(text.size() + 1);
  append_symbols(" ", syms);
  const auto is_continuation = [](char ch) { return (static_cast<uint8_t>(ch) & 0xC0) == 0x80; };
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;
    while (i + len < text.size() && len < 4 && is_continuation(text[i + len])) ++len;
    append_symbols(text.substr(i, len), syms);
    i += len;
  }
  merge(syms);
  ids.insert(ids.end(), syms.begin(), syms.end());
}

// Repeatedly merges the best-scoring adjacent pair. Symbols form a linked list over their
// original positions; a heap holds candidate pairs, stale ones (either side merged since) are
// skipped when popped. Ordering by (score desc, left position asc) reproduces run.c's choice of
// the leftmost pair with the highest score, since merging never reorders symbols.
void Llama2cTokenizer::merge(std::vector<int32_t>& syms) const {
  struct Cand {
    float score;
    int32_t left, right, merged, left_id, right_id;
  };
  const auto lower = [](const Cand& a, const Cand& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(lower)> heap(lower);
  const auto n = static_cast<int32_t>(syms.size());
  std::vector<int32_t> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    prev[static_cast<size_t>(i)] = i - 1;
    next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  std::string buf;
  const auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const int32_t a = syms[static_cast<size_t>(l)], b = syms[static_cast<size_t>(r)];
    buf.assign(v_.pieces[static_cast<size_t>(a)]).append(v_.pieces[static_cast<size_t>(b)]);
    const int32_t id = lookup(buf);
    if (id >= 0 && v_.scores[static_cast<size_t>(id)] > kNoMergeScore)
      heap.push({v_.scores[static_cast<size_t>(id)], l, r, id, a, b});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);

  std::vector<bool> dead(static_cast<size_t>(n), false);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const auto l = static_cast<size_t>(c.left), r = static_cast<size_t>(c.right);
    if (dead[l] || dead[r] || next[l] != c.right || syms[l] != c.left_id || syms[r] != c.right_id) continue;
    syms[l] = c.merged;
    dead[r] = true;
    next[l] = next[r];
    if (next[r] >= 0) prev[static_cast<size_t>(next[r])] = c.left;
    consider(prev[l], c.left);
    consider(c.left, next[l]);
  }
  size_t out = 0;
  for (size_t i = 0; i < syms.size(); ++i)
    if (!dead[i]) syms[out++] = syms[i];
  syms.resize(out);
}

}  // namespace

std::unique_ptr<Tokenizer> make_llama2c_tokenizer(std::span<const uint8_t> model, int32_t bos_id, int32_t eos_id) {
  return std::make_unique<Llama2cTokenizer>(parse_vocab(model), bos_id, eos_id);
}

}  // namespace sbits::text_detail
