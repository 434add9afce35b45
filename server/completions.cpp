#include "server/completions.h"

#include <fmt/format.h>

#include <chrono>
#include <random>

namespace sbits::server {
namespace {

// How long a stream may stay silent (queued, or a long prefill) before we send an SSE comment:
// it keeps proxies from timing out, and writing is how we notice a client that left.
constexpr auto kKeepAlive = std::chrono::milliseconds(1000);

std::vector<int32_t> render_chat(const CompletionRequest& r, const PromptContext& c) {
  std::vector<ChatMessage> messages;
  messages.reserve(r.messages.size());
  for (const InputMessage& m : r.messages) messages.push_back({m.role, m.content});
  const std::string text = c.chat_template.render(messages, /*add_generation_prompt=*/true);
  return c.tokenizer.encode_with_specials(text, /*add_bos=*/false);  // the template writes BOS itself
}

std::optional<ApiError> check_ids(const std::vector<int32_t>& ids, int32_t vocab) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      return invalid_request(fmt::format("'prompt[{}]' is token {}, outside the vocabulary [0, {})", i, ids[i], vocab),
                             fmt::format("prompt[{}]", i), "invalid_value");
  return std::nullopt;
}

std::optional<std::vector<LogprobEntry>> logprob_entries(const std::vector<TokenRecord>& records, bool wanted,
                                                         const Tokenizer& tok) {
  if (!wanted) return std::nullopt;
  std::vector<LogprobEntry> out;
  out.reserve(records.size());
  for (const TokenRecord& r : records) {
    LogprobEntry e{tok.token_bytes(r.id, r.prev), r.logprob, {}};
    for (const auto& [id, lp] : r.top) e.top.push_back({tok.token_bytes(id, r.prev), lp});
    out.push_back(std::move(e));
  }
  return out;
}

// The error a job that did not end normally answers with.
ApiError job_error(const JobOutput& out) {
  switch (out.reason) {
    case FinishReason::timeout: return {ErrorKind::timeout, out.error, "", ""};
    case FinishReason::cancelled:
      return {ErrorKind::unavailable, out.error.empty() ? "the request was cancelled" : out.error, "", ""};
    default: return {ErrorKind::internal, out.error.empty() ? "internal error" : out.error, "", ""};
  }
}

bool ended_normally(FinishReason r) { return r == FinishReason::stop || r == FinishReason::length; }

// Owns the job of a streamed reply: whichever way the stream ends (done, client gone, or the
// response dropped before it started), the job stops using its slot.
struct StreamState {
  std::shared_ptr<Job> job;
  ~StreamState() {
    if (job) job->cancel();  // no effect once finished
  }
};

void run_stream(const ChunkWriter& write, Job& job, const ResponseMeta& meta, const ReplyOptions& o,
                const Tokenizer& tok) {
  const bool chat = meta.endpoint == Endpoint::chat;
  // OpenAI opens a chat stream with the role and empty content.
  if (chat && !write(chunk_event(meta, "", std::nullopt, {.first = true, .with_usage = o.include_usage}))) return;
  size_t offset = 0;
  while (true) {
    JobOutput out = job.take(kKeepAlive);
    if (!out.text.empty() || (o.logprobs && !out.tokens.empty())) {
      ChunkOptions co{.with_usage = o.include_usage, .text_offset = offset};
      offset += out.text.size();
      if (!write(chunk_event(meta, out.text, logprob_entries(out.tokens, o.logprobs, tok), co))) return;
    } else if (!out.finished) {
      if (!write(": keep-alive\n\n")) return;
      continue;
    }
    if (!out.finished) continue;
    if (ended_normally(out.reason)) {
      ChunkOptions last{.finish_reason = finish_reason_name(out.reason), .with_usage = o.include_usage,
                        .text_offset = offset};
      if (!write(chunk_event(meta, "", std::nullopt, last))) return;
      if (o.include_usage && !write(usage_event(meta, {out.prompt_tokens, out.completion_tokens}))) return;
    } else if (!write(error_event(job_error(out)))) {
      return;
    }
    write(kSseDone);
    return;
  }
}

}  // namespace

Parsed<GenerationRequest> prepare_generation(const CompletionRequest& r, const PromptContext& c) {
  GenerationRequest g;
  try {
    if (r.endpoint == Endpoint::chat) {
      g.prompt = render_chat(r, c);
      g.stop_tokens = c.template_stop_tokens;
    } else if (r.prompt_tokens) {
      if (auto err = check_ids(*r.prompt_tokens, c.tokenizer.vocab_size())) return *err;
      g.prompt = *r.prompt_tokens;
    } else {
      g.prompt = c.tokenizer.encode(r.prompt, /*add_bos=*/true);
    }
  } catch (const std::exception& e) {  // the template refuses these messages
    return invalid_request(fmt::format("cannot render the messages with the chat template '{}': {}",
                                       c.chat_template.name(), e.what()),
                           "messages");
  }
  if (g.prompt.empty())
    return invalid_request("the prompt is empty and the model has no BOS token to start from", "prompt");
  if (g.prompt.size() >= static_cast<size_t>(c.n_ctx))
    return invalid_request(fmt::format("the prompt has {} tokens but the context holds {} (--ctx), and at least one "
                                       "position must remain for the reply; shorten the prompt",
                                       g.prompt.size(), c.n_ctx),
                           r.endpoint == Endpoint::chat ? "messages" : "prompt", "context_length_exceeded");
  g.max_tokens = r.max_tokens;
  g.sampling = r.sampling;
  // OpenAI's penalties look at the whole text so far, not a recent window.
  g.sampling.repeat_last_n = c.n_ctx;
  if (!r.seed_given) g.sampling.seed = std::random_device{}() * 0x9E3779B97F4A7C15ull ^ std::random_device{}();
  g.stop = r.stop;
  if (r.endpoint == Endpoint::chat)
    g.stop.insert(g.stop.end(), c.chat_template.stop_strings().begin(), c.chat_template.stop_strings().end());
  g.logprobs = r.logprobs;
  return g;
}

HttpResponse whole_reply(const std::shared_ptr<Job>& job, const ResponseMeta& meta, const ReplyOptions& o,
                         const Tokenizer& tok) {
  std::string text;
  std::vector<TokenRecord> tokens;
  JobOutput out;
  do {
    out = job->take(std::chrono::milliseconds(500));
    text += out.text;
    tokens.insert(tokens.end(), out.tokens.begin(), out.tokens.end());
  } while (!out.finished);
  if (!ended_normally(out.reason)) return error_response(job_error(out));
  HttpResponse res;
  res.body = completion_body(meta, text, finish_reason_name(out.reason), {out.prompt_tokens, out.completion_tokens},
                             logprob_entries(tokens, o.logprobs, tok));
  return res;
}

HttpResponse streamed_reply(std::shared_ptr<Job> job, const ResponseMeta& meta, const ReplyOptions& options,
                            const Tokenizer& tokenizer) {
  auto state = std::make_shared<StreamState>();
  state->job = std::move(job);
  HttpResponse res;
  res.content_type = "text/event-stream";
  res.headers = {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}};
  res.stream = [state, meta, options, tok = &tokenizer](const ChunkWriter& write) {
    run_stream(write, *state->job, meta, options, *tok);
  };
  return res;
}

}  // namespace sbits::server
