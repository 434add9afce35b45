// One sequence being generated: a KV cache slot, the tokens fed so far, and the generation loop.
//
// Threading: a Session is used by one thread at a time; cancel() may be called from any thread.
// Context policy: feeding past n_ctx positions throws EngineError naming the numbers; generate()
// instead stops with StopReason::context_full, so a reply is never silently truncated.
#pragma once

#include <atomic>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "engine/forward.h"
#include "engine/text/sampler.h"

namespace sbits {

struct SessionOptions {
  int n_ctx = 0;                               // 0: the model's context length
  kernels::KvType kv_type = kernels::KvType::f16;
  int max_batch_rows = 0;                      // prefill chunk size; 0: the backend's choice
};

enum class StopReason { eos, length, context_full, callback, cancelled };

// Thrown by feed() and feed_greedy() when cancel() stopped a prefill at a chunk boundary; the
// chunks before it stay in the context (n_past() counts them).
class SessionCancelled : public EngineError {
 public:
  using EngineError::EngineError;
};
const char* stop_reason_name(StopReason r);

struct GenerationStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prompt_seconds = 0;   // prefill time
  double decode_seconds = 0;   // time of the generated tokens after the first
  double ttft_seconds = 0;     // from the call to the first token's text
  StopReason stop = StopReason::length;
};

class Session {
 public:
  Session(const Model& model, const SessionOptions& options = {});

  const Model& model() const { return model_; }
  int n_ctx() const { return n_ctx_; }
  int n_past() const { return static_cast<int>(tokens_.size()); }
  int max_batch_rows() const { return forward_.max_rows(); }  // prompt rows per forward pass
  const std::vector<int32_t>& tokens() const { return tokens_; }
  void reset();
  // Drops tokens after the first n (keeps their cached keys and values: later feeds overwrite).
  void truncate(int n);

  // Appends tokens (prefill in chunks) and returns the logits after the last one (valid until the
  // next call). Throws EngineError if n_past() + tokens.size() > n_ctx().
  std::span<float> feed(std::span<const int32_t> tokens);
  // The same, but returns only the id of the largest logit after the last token (lower id on a
  // tie, as the greedy sampler): the selection runs on the backend (Backend::top_k), so a GPU
  // backend sends back one id instead of the vocabulary's logits. feed()'s logits are not
  // updated.
  int32_t feed_greedy(std::span<const int32_t> tokens);
  // The same for the k = ids.size() largest logits (1 <= k <= kernels::Backend::kMaxTopK, and
  // logits.size() == k): most likely first, the lower id first on ties.
  void feed_top_k(std::span<const int32_t> tokens, std::span<int32_t> ids, std::span<float> logits);

  // Appends prompt, then samples up to max_tokens tokens, calling on_token(id, text) for each one
  // (text is complete UTF-8; it may be empty while a character is split across tokens). The
  // end-of-sequence token stops generation and is not passed on. on_token returning false stops.
  // A last call with id -1 may carry text held back at the end (bytes of an unfinished character).
  // A greedy sampler without penalties (temperature <= 0, no repeat/presence/frequency
  // penalty) takes its tokens from feed_greedy: the same choices, but sampler.sample() is not
  // called, so its last_top_logprobs()/last_logprob() are not updated. A sampler that needs only
  // the top-k logits (Sampler::candidates_needed: top-k on, no penalties) gets them from
  // feed_top_k (Sampler::sample_top: the same choices). Others read all logits on the host.
  using TokenCallback = std::function<bool(int32_t id, std::string_view text)>;
  GenerationStats generate(std::span<const int32_t> prompt, int max_tokens, Sampler& sampler,
                           const TokenCallback& on_token);

  // Stops generate() before its next token, or a prefill (feed, or generate's prompt) before its
  // next chunk of max_batch_rows tokens.
  void cancel() { cancel_.store(true); }

 private:
  // feed() and feed_top_k(): with top_ids, the k = top_ids.size() largest logits instead of all.
  void feed_rows(std::span<const int32_t> tokens, std::span<int32_t> top_ids, std::span<float> top_logits);

  const Model& model_;
  int n_ctx_;
  Forward forward_;
  std::unique_ptr<kernels::KvCache> cache_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
  std::atomic<bool> cancel_{false};
};

}  // namespace sbits
