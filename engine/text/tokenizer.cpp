#include <fmt/format.h>

#include "engine/text/tokenizer.h"
#include "engine/text/tokenizer_impl.h"

namespace sbits {

std::unique_ptr<Tokenizer> Tokenizer::create(const std::string& kind, std::span<const uint8_t> model,
                                             int32_t bos_id, int32_t eos_id) {
  if (kind == "sentencepiece") return text_detail::make_sentencepiece_tokenizer(model, bos_id, eos_id);
  if (kind == "llama2c") return text_detail::make_llama2c_tokenizer(model, bos_id, eos_id);
  throw TokenizerError(fmt::format("unknown tokenizer kind '{}' (expected 'sentencepiece' or 'llama2c')", kind));
}

Tokenizer::~Tokenizer() = default;

void Tokenizer::check_id(int32_t id, const char* what) const {
  if (id < 0 || id >= vocab_size()) {
    throw TokenizerError(fmt::format("{}: token id {} is outside the vocabulary [0, {})", what, id, vocab_size()));
  }
}

void Tokenizer::check_special_ids(const std::string& kind) const {
  for (auto [name, id] : {std::pair{"bos_id", bos_id_}, std::pair{"eos_id", eos_id_}}) {
    if (id < -1 || id >= vocab_size()) {
      throw TokenizerError(fmt::format("{} tokenizer: {} {} is outside the vocabulary of {} pieces (use -1 for none)",
                                       kind, name, id, vocab_size()));
    }
  }
}

}  // namespace sbits
