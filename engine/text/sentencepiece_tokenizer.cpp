// Tokenizer kind "sentencepiece": libsentencepiece does the encoding and the whole-sequence
// decoding, so both are SentencePiece's by construction. token_bytes (the per-token view used
// for streaming) is ours, from a table built once: it follows the same rules as
// SentencePieceProcessor::Decode, and the tests check that the two agree.
#include <sentencepiece_processor.h>

#include <fmt/format.h>

#include <string>
#include <string_view>
#include <vector>

#include "engine/text/sentencepiece_proto.h"
#include "engine/text/special_tokens.h"
#include "engine/text/tokenizer_impl.h"

namespace sbits::text_detail {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // "▁", SentencePiece's escaped space
constexpr const char* kKind = "sentencepiece";

// What one id contributes to the output, precomputed so token_bytes is a table look-up.
struct PieceText {
  std::string text;           // "▁" already replaced by " "; the raw byte for byte pieces
  bool leading_space = false;  // text came from a piece starting with "▁" (not a <0x20> byte)
};

// "<0x41>" -> 0x41; -1 if the piece does not have that exact form.
int byte_piece_value(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return -1;
  int v = 0;
  for (char c : piece.substr(3, 2)) {
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

std::string replace_space_symbol(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  for (size_t pos = 0; pos < piece.size();) {
    if (piece.substr(pos).starts_with(kSpaceSymbol)) {
      out += ' ';
      pos += kSpaceSymbol.size();
    } else {
      out += piece[pos++];
    }
  }
  return out;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(std::span<const uint8_t> model, int32_t bos_id, int32_t eos_id)
      : Tokenizer(bos_id, eos_id) {
    const std::string_view bytes(reinterpret_cast<const char*>(model.data()), model.size());
    if (model.empty()) throw TokenizerError("sentencepiece tokenizer: the model is empty (0 bytes)");
    const auto status = sp_.LoadFromSerializedProto(bytes);
    if (!status.ok()) {
      throw TokenizerError(fmt::format("sentencepiece tokenizer: cannot load the model ({} bytes): {}. "
                                       "Expected a serialized SentencePiece ModelProto (a .model file)",
                                       model.size(), status.ToString()));
    }
    vocab_size_ = sp_.GetPieceSize();
    if (vocab_size_ <= 0) throw TokenizerError("sentencepiece tokenizer: the model has no pieces");
    check_special_ids(kKind);
    build_tables(model);
  }

  int32_t vocab_size() const override { return vocab_size_; }

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
    const PieceText& p = pieces_[static_cast<size_t>(id)];
    if (p.leading_space && strip_space_after_bos_ && prev >= 0 && prev == bos_id()) return p.text.substr(1);
    return p.text;
  }

  std::string decode(std::span<const int32_t> ids) const override {
    std::vector<int> v(ids.begin(), ids.end());
    for (int32_t id : ids) check_id(id, "decode");
    std::string out;
    const auto status = sp_.Decode(v, &out);
    if (!status.ok()) throw TokenizerError(fmt::format("sentencepiece decode failed: {}", status.ToString()));
    return out;
  }

  bool is_control(int32_t id) const override {
    return id >= 0 && id < vocab_size_ && sp_.IsControl(id);
  }

  std::string piece(int32_t id) const override {
    check_id(id, "piece");
    return sp_.IdToPiece(id);
  }

 private:
  void append_plain(std::string_view text, std::vector<int32_t>& ids) const {
    if (text.empty()) return;
    std::vector<int> out;
    const auto status = sp_.Encode(text, &out);
    // Encode only fails when no model is loaded, which the constructor rules out.
    if (!status.ok()) throw TokenizerError(fmt::format("sentencepiece encode failed: {}", status.ToString()));
    ids.insert(ids.end(), out.begin(), out.end());
  }

  void build_tables(std::span<const uint8_t> model) {
    // Types from the proto itself, for user-defined pieces; if our reader disagrees with
    // libsentencepiece about the piece count, we use libsentencepiece's answers alone.
    auto types = read_sentencepiece_piece_types(model);
    if (types && types->size() != static_cast<size_t>(vocab_size_)) types.reset();

    pieces_.resize(static_cast<size_t>(vocab_size_));
    std::vector<std::pair<std::string, int32_t>> specials;
    int32_t some_spaced_piece = -1;
    for (int32_t id = 0; id < vocab_size_; ++id) {
      const std::string& piece = sp_.IdToPiece(id);
      PieceText& p = pieces_[static_cast<size_t>(id)];
      const bool user_defined = types && (*types)[static_cast<size_t>(id)] == SpPieceType::user_defined;
      if (sp_.IsControl(id) || sp_.IsUnknown(id) || user_defined) specials.emplace_back(piece, id);
      if (sp_.IsControl(id)) continue;  // contributes nothing
      if (sp_.IsUnknown(id)) {
        p.text = decode_one(id);  // the model's unk_surface, " ⁇ " by default
      } else if (const int b = sp_.IsByte(id) ? byte_piece_value(piece) : -1; b >= 0) {
        p.text.assign(1, static_cast<char>(b));
      } else {
        p.text = replace_space_symbol(piece);
        p.leading_space = piece.starts_with(kSpaceSymbol);
        if (p.leading_space && some_spaced_piece < 0) some_spaced_piece = id;
      }
    }
    specials_ = SpecialTokenMatcher(std::move(specials));
    // SentencePiece drops the first piece's leading space only when the normalizer adds a dummy
    // prefix or removes extra whitespace. Rather than decode the normalizer spec, ask it.
    if (some_spaced_piece >= 0) {
      const std::string& text = pieces_[static_cast<size_t>(some_spaced_piece)].text;
      strip_space_after_bos_ = decode_one(some_spaced_piece) == text.substr(1);
    }
  }

  std::string decode_one(int32_t id) const {
    std::string out;
    if (!sp_.Decode(std::vector<int>{id}, &out).ok()) return {};
    return out;
  }

  sentencepiece::SentencePieceProcessor sp_;
  int32_t vocab_size_ = 0;
  std::vector<PieceText> pieces_;
  SpecialTokenMatcher specials_;
  bool strip_space_after_bos_ = true;
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(std::span<const uint8_t> model, int32_t bos_id,
                                                        int32_t eos_id) {
  return std::make_unique<SentencePieceTokenizer>(model, bos_id, eos_id);
}

}  // namespace sbits::text_detail
