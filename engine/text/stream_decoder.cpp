#include "engine/text/tokenizer.h"
#include "engine/text/utf8.h"

namespace sbits {

std::string StreamDecoder::push(int32_t id) {
  std::string out;
  if (tok_->is_control(id)) {
    // SentencePiece decodes each run of byte pieces on its own: a control token between the
    // bytes of a character leaves that character unfinished. Do the same, so that streaming
    // and Tokenizer::decode agree.
    text_detail::utf8_append_sanitized(pending_, /*final=*/true, out);
    pending_.clear();
  }
  pending_ += tok_->token_bytes(id, prev_);
  prev_ = id;
  const size_t used = text_detail::utf8_append_sanitized(pending_, /*final=*/false, out);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  text_detail::utf8_append_sanitized(pending_, /*final=*/true, out);
  pending_.clear();
  return out;
}

void StreamDecoder::reset() {
  prev_ = -1;
  pending_.clear();
}

}  // namespace sbits
