#include "engine/session.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "engine/text/tokenizer.h"

namespace sbits {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int resolve_ctx(const Model& model, int requested) {
  const auto model_ctx = static_cast<int>(std::min<uint64_t>(model.config().context_length, 1u << 30));
  if (requested < 0) throw EngineError(fmt::format("context length must be >= 0, got {}", requested));
  return requested == 0 ? model_ctx : requested;
}

}  // namespace

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::eos: return "eos";
    case StopReason::length: return "length";
    case StopReason::context_full: return "context_full";
    case StopReason::callback: return "stopped";
    case StopReason::cancelled: return "cancelled";
  }
  return "unknown";
}

Session::Session(const Model& model, const SessionOptions& options)
    : model_(model),
      n_ctx_(resolve_ctx(model, options.n_ctx)),
      forward_(model, options.max_batch_rows != 0 ? options.max_batch_rows : model.backend().preferred_prefill_rows()) {
  cache_ = forward_.make_kv_cache(1, n_ctx_, options.kv_type);
  logits_.resize(model.config().vocab_size);
}

void Session::reset() {
  tokens_.clear();
  cancel_.store(false);
}

void Session::truncate(int n) {
  if (n < 0 || n > n_past()) throw EngineError(fmt::format("truncate: {} is outside [0, {}]", n, n_past()));
  tokens_.resize(static_cast<size_t>(n));
}

std::span<float> Session::feed(std::span<const int32_t> tokens) {
  feed_rows(tokens, {}, {});
  return logits_;
}

int32_t Session::feed_greedy(std::span<const int32_t> tokens) {
  int32_t id = -1;
  float value = 0;
  feed_rows(tokens, std::span(&id, 1), std::span(&value, 1));
  return id;
}

void Session::feed_top_k(std::span<const int32_t> tokens, std::span<int32_t> ids, std::span<float> logits) {
  if (ids.empty() || ids.size() != logits.size())
    throw EngineError(fmt::format("feed_top_k: room for {} ids and {} logits; expected k >= 1 of each", ids.size(),
                                  logits.size()));
  feed_rows(tokens, ids, logits);
}

void Session::feed_rows(std::span<const int32_t> tokens, std::span<int32_t> top_ids, std::span<float> top_logits) {
  if (tokens.empty()) throw EngineError("feed: no tokens");
  if (tokens.size() > static_cast<size_t>(n_ctx_ - n_past()))
    throw EngineError(fmt::format("context full: {} tokens already in the context and {} more do not fit in {} "
                                  "positions (raise --ctx, up to the model's {})",
                                  n_past(), tokens.size(), n_ctx_, model_.config().context_length));
  std::vector<kernels::RowInfo> rows;
  const size_t chunk = static_cast<size_t>(forward_.max_rows());
  for (size_t start = 0; start < tokens.size(); start += chunk) {
    if (cancel_.exchange(false))  // a long prompt is many chunks: seconds on a CPU
      throw SessionCancelled(fmt::format("feed: cancelled after {} of {} tokens", start, tokens.size()));
    const size_t n = std::min(chunk, tokens.size() - start);
    rows.resize(n);
    for (size_t i = 0; i < n; ++i) rows[i] = {0, static_cast<int32_t>(tokens_.size() + i)};
    const bool last = start + n == tokens.size();
    const int32_t last_row = static_cast<int32_t>(n - 1);
    if (last && !top_ids.empty()) {
      forward_.run_top_k(*cache_, tokens.subspan(start, n), rows, std::span<const int32_t>(&last_row, 1),
                         static_cast<int>(top_ids.size()), top_ids.data(), top_logits.data());
    } else {
      forward_.run(*cache_, tokens.subspan(start, n), rows,
                   last ? std::span<const int32_t>(&last_row, 1) : std::span<const int32_t>(), logits_.data());
    }
    tokens_.insert(tokens_.end(), tokens.begin() + static_cast<ptrdiff_t>(start),
                   tokens.begin() + static_cast<ptrdiff_t>(start + n));
  }
}

GenerationStats Session::generate(std::span<const int32_t> prompt, int max_tokens, Sampler& sampler,
                                  const TokenCallback& on_token) {
  GenerationStats st;
  const auto t0 = std::chrono::steady_clock::now();
  st.prompt_tokens = static_cast<int>(prompt.size());
  if (prompt.empty()) throw EngineError("generate: the prompt has no tokens (add BOS for an empty prompt)");
  for (int32_t t : prompt) sampler.accept(t);
  // Greedy without penalties needs only the argmax: let the backend pick it (see session.h).
  const bool on_backend = sampler.params().temperature <= 0 && !sampler.penalties_on();
  // Otherwise only the top-k when the sampler needs no more (see session.h).
  const int32_t k = on_backend ? 0 : sampler.candidates_needed(kernels::Backend::kMaxTopK);
  std::vector<int32_t> top_ids(static_cast<size_t>(k));
  std::vector<float> top_logits(static_cast<size_t>(k));
  std::span<float> logits;
  int32_t best = -1;
  // Feeds tokens, leaving the next choice's inputs in best, top_* or logits; false when cancel()
  // stopped it.
  auto advance = [&](std::span<const int32_t> tokens) {
    try {
      if (on_backend)
        best = feed_greedy(tokens);
      else if (k > 0)
        feed_top_k(tokens, top_ids, top_logits);
      else
        logits = feed(tokens);
      return true;
    } catch (const SessionCancelled&) {
      return false;
    }
  };
  const bool prompt_fed = advance(prompt);
  st.prompt_seconds = seconds_since(t0);
  if (!prompt_fed) {
    st.stop = StopReason::cancelled;
    return st;
  }

  const Tokenizer& tok = model_.tokenizer();
  StreamDecoder decoder(tok);
  decoder.push(prompt.back());  // so the first generated piece sees the right previous token
  std::chrono::steady_clock::time_point t_first;
  st.stop = StopReason::length;
  for (int i = 0; i < max_tokens; ++i) {
    if (cancel_.exchange(false)) { st.stop = StopReason::cancelled; break; }
    const int32_t id = on_backend ? best : k > 0 ? sampler.sample_top(top_ids, top_logits) : sampler.sample(logits);
    sampler.accept(id);
    if (id == tok.eos_id()) { st.stop = StopReason::eos; break; }
    std::string text = decoder.push(id);
    ++st.generated_tokens;
    if (i == 0) {
      t_first = std::chrono::steady_clock::now();
      st.ttft_seconds = seconds_since(t0);
    }
    if (!on_token(id, text)) { st.stop = StopReason::callback; break; }
    if (i + 1 == max_tokens) break;  // the last token needs no forward pass
    if (n_past() >= n_ctx_) { st.stop = StopReason::context_full; break; }
    const int32_t next[1] = {id};
    if (!advance(next)) {
      st.stop = StopReason::cancelled;
      break;
    }
  }
  if (std::string rest = decoder.flush(); !rest.empty() && st.generated_tokens > 0) on_token(-1, rest);
  if (st.generated_tokens > 1) st.decode_seconds = seconds_since(t_first);
  return st;
}

}  // namespace sbits
