// OpenAI request bodies -> internal structs, with every check the API promises.
//
// Rules (as OpenAI's own API): unknown fields are ignored; a known field with the wrong JSON
// type is a 400 that names the field and the type found; null means "absent" for optional
// fields; values out of range are a 400 that gives the range. Features this server does not
// implement (n > 1, echo, suffix, tools, logit_bias, ...) are a 400 that says so, never
// silently ignored.
//
// Pure functions of the body text: no model, no I/O, safe on any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/text/sampler.h"
#include "server/api_error.h"

namespace sbits::server {

enum class Endpoint { chat, completion };

struct InputMessage {
  std::string role;     // system, user or assistant ("developer" is read as system)
  std::string content;  // text parts joined
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::chat;
  std::string model;                     // "" when absent
  std::vector<InputMessage> messages;    // chat
  std::string prompt;                    // completion, as text...
  std::optional<std::vector<int32_t>> prompt_tokens;  // ...or as token ids
  int max_tokens = -1;                   // -1: until the context is full
  SamplerParams sampling;                // OpenAI defaults: temperature 1, top_p 1, no top-k/min-p
  bool seed_given = false;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;            // stream_options.include_usage
  int logprobs = -1;                     // -1: none; else how many alternatives per token
};

template <typename T>
using Parsed = std::variant<T, ApiError>;

Parsed<CompletionRequest> parse_chat_request(std::string_view body);
Parsed<CompletionRequest> parse_completion_request(std::string_view body);

struct TokenizeRequest {
  std::string content;
  bool add_special = false;   // prepend BOS
  bool parse_special = true;  // "<s>" and the like written in the text become their ids
  bool with_pieces = false;   // also return each token's vocabulary piece
};
Parsed<TokenizeRequest> parse_tokenize_request(std::string_view body);

struct DetokenizeRequest {
  std::vector<int32_t> tokens;
};
Parsed<DetokenizeRequest> parse_detokenize_request(std::string_view body);

}  // namespace sbits::server
