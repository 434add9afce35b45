// Internal results -> OpenAI's response shapes, byte for byte what its clients parse:
//   chat:        "chat.completion", and "chat.completion.chunk" for each server-sent event
//   completions: "text_completion" (both whole and streamed)
// plus "usage", both logprobs layouts (chat's "content" list, the legacy parallel arrays) and
// SSE framing ("data: {...}\n\n", ending with "data: [DONE]\n\n").
//
// Pure functions; JSON text is always valid UTF-8 (token bytes that are part of a character
// are replaced in "token" strings; the exact bytes are in "bytes").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/http_server.h"
#include "server/openai_request.h"

namespace sbits::server {

struct ResponseMeta {
  Endpoint endpoint = Endpoint::chat;
  std::string id;     // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;
  std::string model;
};

// A fresh id for a response of this endpoint (random, 24 hex digits after the prefix).
std::string new_response_id(Endpoint endpoint);

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

struct LogprobEntry {
  std::string token;  // the bytes the token adds to the text
  float logprob = 0;
  struct Alternative {
    std::string token;
    float logprob = 0;
  };
  std::vector<Alternative> top;
};

// A non-streamed reply: "chat.completion" or "text_completion", with usage.
// `logprobs`: nullopt when not asked for. `text_offset` is where the reply starts in the
// text the legacy logprobs count offsets from (the prompt's length; OpenAI counts from it).
std::string completion_body(const ResponseMeta& meta, const std::string& text, const std::string& finish_reason,
                            const Usage& usage, const std::optional<std::vector<LogprobEntry>>& logprobs,
                            size_t text_offset = 0);

// One streamed event. For chat, `first` adds the assistant role to the delta; an empty
// `finish_reason` is null. `with_usage` adds "usage": null, as OpenAI does in every chunk when
// stream_options.include_usage is set.
struct ChunkOptions {
  bool first = false;
  std::string finish_reason;
  bool with_usage = false;
  size_t text_offset = 0;  // legacy logprobs: offset of this chunk's text
};
std::string chunk_event(const ResponseMeta& meta, const std::string& text,
                        const std::optional<std::vector<LogprobEntry>>& logprobs, const ChunkOptions& options);
// The last chunk before [DONE] when include_usage is set: "choices": [] and the usage.
std::string usage_event(const ResponseMeta& meta, const Usage& usage);
// An error inside a stream that has already sent its 200 headers.
std::string error_event(const ApiError& error);
// An HttpResponse carrying {"error": {...}} with the kind's status (and Retry-After for 503s).
HttpResponse error_response(const ApiError& error);

inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace sbits::server
