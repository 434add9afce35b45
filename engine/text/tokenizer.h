// Tokenizers (text <-> token ids) and streaming detokenization.
//
// Two kinds, chosen by name in Tokenizer::create:
//   "sentencepiece"  a serialized SentencePiece ModelProto (the bytes of a .model file), run by
//                    libsentencepiece itself, so ids are SentencePiece's by construction.
//   "llama2c"        the bytes of a llama2.c tokenizer.bin, with llama2.c's own encode (BPE by
//                    merge score) and decode.
//
// Threading: a Tokenizer is immutable after create(); all const methods may be called from
// several threads at once. A StreamDecoder belongs to one thread (one generation stream).
// Failure: create() throws TokenizerError on bad model bytes; encode/decode never fail on any
// input text; methods taking an id throw TokenizerError when it is outside [0, vocab_size()).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sbits {

class TokenizerError : public std::runtime_error {
  using runtime_error::runtime_error;
};

class Tokenizer {
 public:
  // kind "sentencepiece": model = serialized SentencePiece ModelProto (the bytes of a .model file).
  // kind "llama2c": model = the bytes of a llama2.c tokenizer.bin (int32 max_token_length, then
  //   per token: float score, int32 len, len bytes; the number of tokens is however many the
  //   bytes hold), with llama2.c's encode (BPE merges by score, byte fallback <0xXX>, dummy-prefix
  //   space) and decode. See llama2c_tokenizer.cpp for the few places we differ from run.c.
  // bos_id/eos_id: -1 for none; otherwise they must be ids of the vocabulary.
  // Throws TokenizerError with context (kind, offset, expected vs found) on bad bytes.
  static std::unique_ptr<Tokenizer> create(const std::string& kind, std::span<const uint8_t> model,
                                           int32_t bos_id, int32_t eos_id);
  virtual ~Tokenizer();

  virtual int32_t vocab_size() const = 0;
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }

  // Plain text, no special-token parsing ("<s>" in text is literal text). add_bos prepends
  // bos_id() (when there is one).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;

  // Text where control tokens written literally map to their ids: "<s>", "</s>", and every
  // other control, user-defined or unknown piece of the vocabulary (such as "<|im_end|>").
  // The text between them is encoded plainly, each stretch on its own, so each gets
  // SentencePiece's dummy-prefix space. That is llama.cpp's parse_special behaviour for SPM
  // vocabularies (it prefixes a space to every raw-text fragment that follows a special token
  // or starts the text) and what Meta's Llama 2 chat code does by encoding turns separately:
  // "<s>[INST] hi" -> [1, "▁[", "INST", "]", "▁hi"].
  virtual std::vector<int32_t> encode_with_specials(std::string_view text, bool add_bos) const = 0;

  // The bytes token `id` contributes to the output stream when it follows `prev` (-1: nothing
  // before it). "▁" -> " ", byte pieces <0x0A> -> the raw byte, control tokens -> "", the unknown
  // piece -> its surface as SentencePiece decodes it (" ⁇ " unless the model sets another; the
  // llama2c kind always uses " ⁇ "). The leading space of a piece is dropped when prev is BOS, as
  // llama2.c and SentencePiece's decode do. May be part of a UTF-8 character.
  virtual std::string token_bytes(int32_t id, int32_t prev) const = 0;

  // The whole sequence, as SentencePiece decodes it: control tokens vanish, the first piece
  // loses its leading space, and ill-formed UTF-8 from byte pieces becomes U+FFFD (one per byte).
  virtual std::string decode(std::span<const int32_t> ids) const = 0;

  // True for control tokens (BOS, EOS, and the like): they decode to nothing.
  virtual bool is_control(int32_t id) const = 0;
  // The raw vocabulary piece ("▁the", "<0x0A>", "<s>"), for debugging and tokenize endpoints.
  virtual std::string piece(int32_t id) const = 0;

 protected:
  Tokenizer(int32_t bos_id, int32_t eos_id) : bos_id_(bos_id), eos_id_(eos_id) {}
  // Throws TokenizerError naming `what` when id is not in [0, vocab_size()).
  void check_id(int32_t id, const char* what) const;
  // Throws TokenizerError when bos/eos are neither -1 nor ids of the vocabulary.
  void check_special_ids(const std::string& kind) const;

 private:
  int32_t bos_id_;
  int32_t eos_id_;
};

// Streaming detokenization that never emits half a UTF-8 character: push() returns the text
// that is complete, holding back the first bytes of a character whose last bytes have not come
// yet; bytes that can no longer become a well-formed character come out as U+FFFD at once (one
// per byte, as SentencePiece's decode). flush() returns what is left, an unfinished character
// becoming U+FFFD per byte. Concatenating every push() and the flush() gives well-formed UTF-8.
//
// The decoder starts as if nothing came before. To continue after a prompt, push the prompt's
// last token first (its text may be discarded): the next piece then keeps or drops its leading
// space correctly (dropped after BOS).
// Holds a reference to the tokenizer, which must outlive it.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tok_(&tokenizer) {}
  std::string push(int32_t id);
  std::string flush();
  void reset();

 private:
  const Tokenizer* tok_;
  int32_t prev_ = -1;
  std::string pending_;  // the first bytes of an unfinished character (at most 3)
};

}  // namespace sbits
