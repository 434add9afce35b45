// The concrete tokenizers behind Tokenizer::create. Internal to engine/text.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "engine/text/tokenizer.h"

namespace sbits::text_detail {

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(std::span<const uint8_t> model, int32_t bos_id,
                                                        int32_t eos_id);
std::unique_ptr<Tokenizer> make_llama2c_tokenizer(std::span<const uint8_t> model, int32_t bos_id, int32_t eos_id);

}  // namespace sbits::text_detail
