// Tokenize, detokenize and chat templates over a model's tokenizer.
#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "engine/c_api/capi_common.h"
#include "engine/text/chat_template.h"

namespace sbits::capi {

ChatTemplate chat_template_for(const sbits_model& m, const char* spec) {
  if (spec) return ChatTemplate::from_spec(spec);  // std::invalid_argument: the caller's spec
  // The file's own template; sbits-run uses "plain" for files that have none, and so do we.
  const std::string& stored = m.model->chat_template();
  try {
    return ChatTemplate::from_spec(stored.empty() ? "plain" : stored);
  } catch (const std::invalid_argument& e) {
    throw ApiError(SBITS_ERR_FORMAT, fmt::format("the model's chat template cannot be used: {}", e.what()));
  }
}

}  // namespace sbits::capi

using namespace sbits::capi;

namespace {

constexpr uint32_t kKnownTokenizeFlags = SBITS_TOKENIZE_ADD_BOS | SBITS_TOKENIZE_PARSE_SPECIAL;

std::vector<sbits::ChatMessage> copy_messages(const sbits_chat_message* messages, size_t n) {
  require(messages || n == 0, fmt::format("messages is NULL with n_messages = {}", n));
  std::vector<sbits::ChatMessage> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    require(messages[i].role != nullptr, fmt::format("messages[{}].role is NULL", i));
    require(messages[i].content != nullptr, fmt::format("messages[{}].content is NULL", i));
    out.push_back({messages[i].role, messages[i].content});
  }
  return out;
}

}  // namespace

extern "C" {

SBITS_API int32_t sbits_tokenize(const sbits_model* model, const char* text, size_t text_len, uint32_t flags,
                                 int32_t* tokens, int32_t capacity) {
  return guarded("sbits_tokenize", SBITS_ERR_INTERNAL, [&]() -> int32_t {
    std::shared_ptr<sbits_model> m = get_model(model);
    require(text || text_len == 0, fmt::format("text is NULL with text_len = {}", text_len));
    check_out_buffer(tokens, capacity, "tokens");
    require((flags & ~kKnownTokenizeFlags) == 0, fmt::format("unknown flags 0x{:x}", flags & ~kKnownTokenizeFlags));
    const std::string_view s(text ? text : "", text_len);
    const bool bos = (flags & SBITS_TOKENIZE_ADD_BOS) != 0;
    const sbits::Tokenizer& tok = m->model->tokenizer();
    const std::vector<int32_t> ids =
        (flags & SBITS_TOKENIZE_PARSE_SPECIAL) ? tok.encode_with_specials(s, bos) : tok.encode(s, bos);
    require(ids.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()),
            fmt::format("the text gives {} tokens, more than an int32_t count can say", ids.size()));
    const auto n = static_cast<int32_t>(ids.size());
    if (n <= capacity) std::copy(ids.begin(), ids.end(), tokens);
    return n;
  });
}

SBITS_API int32_t sbits_detokenize(const sbits_model* model, const int32_t* tokens, int32_t n_tokens, char* text,
                                   int32_t capacity) {
  return guarded("sbits_detokenize", SBITS_ERR_INTERNAL, [&]() -> int32_t {
    std::shared_ptr<sbits_model> m = get_model(model);
    require(n_tokens >= 0, fmt::format("n_tokens is negative ({})", n_tokens));
    require(tokens || n_tokens == 0, fmt::format("tokens is NULL with n_tokens = {}", n_tokens));
    check_out_buffer(text, capacity, "text");
    const sbits::Tokenizer& tok = m->model->tokenizer();
    for (int32_t i = 0; i < n_tokens; ++i)
      require(tokens[i] >= 0 && tokens[i] < tok.vocab_size(),
              fmt::format("tokens[{}] = {} is outside the vocabulary [0, {})", i, tokens[i], tok.vocab_size()));
    return copy_text_out(tok.decode(std::span<const int32_t>(tokens, static_cast<size_t>(n_tokens))), text, capacity);
  });
}

SBITS_API int32_t sbits_apply_chat_template(const sbits_model* model, const char* chat_template,
                                            const sbits_chat_message* messages, size_t n_messages,
                                            int add_generation_prompt, char* text, int32_t capacity) {
  return guarded("sbits_apply_chat_template", SBITS_ERR_INVALID_ARGUMENT, [&]() -> int32_t {
    std::shared_ptr<sbits_model> m = get_model(model);
    check_out_buffer(text, capacity, "text");
    const std::vector<sbits::ChatMessage> msgs = copy_messages(messages, n_messages);
    const sbits::ChatTemplate tmpl = chat_template_for(*m, chat_template);
    return copy_text_out(tmpl.render(msgs, add_generation_prompt != 0), text, capacity);
  });
}

}  // extern "C"
