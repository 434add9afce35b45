// sbits_session_*: sessions over a model, generation with callbacks, cancellation.
#include <fmt/format.h>

#include <climits>
#include <cstring>
#include <optional>
#include <random>

#include "engine/c_api/capi_common.h"
#include "engine/stop_matcher.h"

using namespace sbits::capi;

namespace {

constexpr int32_t kMaxBatch = 4096;

sbits::SessionOptions session_options(const sbits_model& m, const sbits_session_params& p) {
  const uint64_t model_ctx = m.model->config().context_length;
  require(p.n_ctx >= 0 && static_cast<uint64_t>(p.n_ctx) <= model_ctx,
          fmt::format("n_ctx = {} is outside [0, {}] (0 = the model's context length, {})", p.n_ctx, model_ctx,
                      model_ctx));
  require(p.kv_type == SBITS_KV_F16 || p.kv_type == SBITS_KV_F32,
          fmt::format("kv_type = {} is neither SBITS_KV_F16 (0) nor SBITS_KV_F32 (1)", p.kv_type));
  require(p.n_batch >= 0 && p.n_batch <= kMaxBatch,
          fmt::format("n_batch = {} is outside [0, {}] (0 = the backend's choice)", p.n_batch, kMaxBatch));
  sbits::SessionOptions o;
  o.n_ctx = p.n_ctx;
  o.kv_type = p.kv_type == SBITS_KV_F16 ? sbits::kernels::KvType::f16 : sbits::kernels::KvType::f32;
  o.max_batch_rows = p.n_batch;
  return o;
}

sbits::SamplerParams sampler_params(const sbits_sampling_params& p) {
  sbits::SamplerParams s;
  s.temperature = p.temperature;
  s.top_k = p.top_k;
  s.top_p = p.top_p;
  s.min_p = p.min_p;
  s.repeat_penalty = p.repeat_penalty;
  s.repeat_last_n = p.repeat_last_n;
  s.presence_penalty = p.presence_penalty;
  s.frequency_penalty = p.frequency_penalty;
  if (p.seed == SBITS_SEED_RANDOM) {
    std::random_device rd;
    s.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  } else {
    s.seed = p.seed;
  }
  return s;
}

std::vector<std::string> stop_strings(const sbits_model& m, const sbits_generate_params& g) {
  require(g.stop_strings || g.n_stop_strings == 0, fmt::format("stop_strings is NULL with n_stop_strings = {}",
                                                                 g.n_stop_strings));
  std::vector<std::string> stops;
  for (size_t i = 0; i < g.n_stop_strings; ++i) {
    require(g.stop_strings[i] != nullptr, fmt::format("stop_strings[{}] is NULL", i));
    require(g.stop_strings[i][0] != '\0', fmt::format("stop_strings[{}] is empty", i));
    stops.emplace_back(g.stop_strings[i]);
  }
  if (g.chat_stops) {
    const sbits::ChatTemplate tmpl = chat_template_for(m, g.chat_template);
    stops.insert(stops.end(), tmpl.stop_strings().begin(), tmpl.stop_strings().end());
  }
  return stops;
}

void check_prompt(const sbits::Session& s, std::span<const int32_t> prompt) {
  require(!prompt.empty(), "the prompt has no tokens (tokenize with SBITS_TOKENIZE_ADD_BOS for an empty text)");
  const int32_t vocab = s.model().tokenizer().vocab_size();
  for (size_t i = 0; i < prompt.size(); ++i)
    require(prompt[i] >= 0 && prompt[i] < vocab,
            fmt::format("prompt[{}] = {} is outside the vocabulary [0, {})", i, prompt[i], vocab));
  if (prompt.size() > static_cast<size_t>(s.n_ctx()))
    throw ApiError(SBITS_ERR_CONTEXT_FULL,
                   fmt::format("the prompt has {} tokens and the session's context holds {}: shorten the "
                               "conversation or create the session with a larger n_ctx (the model allows {})",
                               prompt.size(), s.n_ctx(), s.model().config().context_length));
}

// Drops the session's tokens after the longest prefix it shares with the prompt, keeping at
// least one prompt token to compute (its logits give the first generated token). Returns how
// many prompt tokens are already in the context.
size_t reuse_prefix(sbits::Session& s, std::span<const int32_t> prompt) {
  const std::vector<int32_t>& have = s.tokens();
  size_t keep = 0;
  while (keep < have.size() && keep + 1 < prompt.size() && have[keep] == prompt[keep]) ++keep;
  s.truncate(static_cast<int>(keep));
  return keep;
}

// Marks the session as generating for the scope's lifetime: sbits_session_cancel takes effect
// only inside it, so a cancel arriving after a generation ended cannot stop the next one.
class GeneratingScope {
 public:
  explicit GeneratingScope(sbits_session& s) : s_(s) { set(true); }
  ~GeneratingScope() { set(false); }
  GeneratingScope(const GeneratingScope&) = delete;
  GeneratingScope& operator=(const GeneratingScope&) = delete;

 private:
  void set(bool on) {
    std::lock_guard<std::mutex> lock(s_.cancel_mutex);
    s_.generating = on;
    s_.cancel.store(false);
  }
  sbits_session& s_;
};

// Between Session::generate and the C callback: holds back stop strings, notices cancellation,
// and remembers why generation ended when the engine only knows "the callback said stop".
class TokenSink {
 public:
  TokenSink(sbits_session& s, sbits_token_callback cb, void* user_data, std::vector<std::string> stops)
      : s_(s), cb_(cb), user_data_(user_data) {
    if (!stops.empty()) matcher_.emplace(std::move(stops));
  }

  bool on_token(int32_t id, std::string_view text) {
    if (reason_) return false;  // stopped: nothing more reaches the caller
    if (s_.cancel.load()) {
      // This token was computed but is not passed on: after sbits_session_cancel returns, the
      // caller sees no new token.
      reason_ = SBITS_STOP_CANCELLED;
      return false;
    }
    if (id >= 0) ++delivered_;
    if (!deliver(matcher_ ? matcher_->push(text) : std::string(text), id)) return false;
    if (matcher_ && matcher_->stopped()) {
      reason_ = SBITS_STOP_STRING;
      return false;
    }
    return true;
  }

  // After generation: the text a stop-string matcher still holds.
  void finish() {
    if (!reason_ && matcher_) deliver(matcher_->flush(), -1);
  }

  std::optional<sbits_stop_reason> reason() const { return reason_; }
  int32_t delivered() const { return delivered_; }

 private:
  bool deliver(const std::string& text, int32_t id) {
    // Held-back text at the end (id -1) is only worth a call when there is some.
    if (!cb_ || (id < 0 && text.empty())) return true;
    if (cb_(text.c_str(), text.size(), id, user_data_) != 0) {
      reason_ = SBITS_STOP_CALLBACK;
      return false;
    }
    return true;
  }

  sbits_session& s_;
  sbits_token_callback cb_;
  void* user_data_;
  std::optional<sbits::StopMatcher> matcher_;
  std::optional<sbits_stop_reason> reason_;
  int32_t delivered_ = 0;
};

int32_t engine_stop_reason(sbits::StopReason r) {
  switch (r) {
    case sbits::StopReason::eos: return SBITS_STOP_EOS;
    case sbits::StopReason::length: return SBITS_STOP_LENGTH;
    case sbits::StopReason::context_full: return SBITS_STOP_CONTEXT_FULL;
    case sbits::StopReason::callback: return SBITS_STOP_CALLBACK;
    case sbits::StopReason::cancelled: return SBITS_STOP_CANCELLED;
  }
  return SBITS_STOP_CALLBACK;
}

struct GenerateCall {
  std::span<const int32_t> prompt;
  const sbits_sampling_params* sampling;
  const sbits_generate_params* params;
  sbits_token_callback callback;
  void* user_data;
  sbits_generate_result* result;
};

int32_t generate(sbits_session& s, const GenerateCall& call) {
  sbits::Session& session = *s.session;
  const sbits_sampling_params sp = read_params(call.sampling, sbits_sampling_default_params(), "sbits_sampling_params");
  const sbits_generate_params gp = read_params(call.params, sbits_generate_default_params(), "sbits_generate_params");
  if (call.result) check_result_struct(call.result, "sbits_generate_result");
  check_prompt(session, call.prompt);
  sbits::Sampler sampler(sampler_params(sp), session.model().tokenizer().vocab_size());
  TokenSink sink(s, call.callback, call.user_data, stop_strings(*s.model, gp));

  // Everything is validated: only now may the session's context change.
  const size_t keep = reuse_prefix(session, call.prompt);
  for (size_t i = 0; i < keep; ++i) sampler.accept(call.prompt[i]);  // penalties see the whole prompt
  GeneratingScope generating(s);
  const int max_tokens = gp.max_tokens < 0 ? INT_MAX : gp.max_tokens;
  const sbits::GenerationStats st =
      session.generate(call.prompt.subspan(keep), max_tokens, sampler,
                       [&](int32_t id, std::string_view text) { return sink.on_token(id, text); });
  sink.finish();

  if (call.result) {
    sbits_generate_result r;
    std::memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.stop_reason = sink.reason() ? *sink.reason() : engine_stop_reason(st.stop);
    r.prompt_tokens = static_cast<int32_t>(call.prompt.size());
    r.cached_tokens = static_cast<int32_t>(keep);
    r.generated_tokens = sink.delivered();
    r.prompt_seconds = st.prompt_seconds;
    r.decode_seconds = st.decode_seconds;
    r.ttft_seconds = st.ttft_seconds;
    write_result(call.result, r);
  }
  return SBITS_OK;
}

}  // namespace

extern "C" {

SBITS_API sbits_session_params sbits_session_default_params(void) {
  sbits_session_params p;
  std::memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.n_ctx = 0;
  p.kv_type = SBITS_KV_F16;
  p.n_batch = 0;
  return p;
}

SBITS_API sbits_sampling_params sbits_sampling_default_params(void) {
  const sbits::SamplerParams d;  // the engine's defaults, so the two cannot drift apart
  sbits_sampling_params p;
  std::memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.temperature = d.temperature;
  p.top_k = d.top_k;
  p.top_p = d.top_p;
  p.min_p = d.min_p;
  p.repeat_penalty = d.repeat_penalty;
  p.repeat_last_n = d.repeat_last_n;
  p.presence_penalty = d.presence_penalty;
  p.frequency_penalty = d.frequency_penalty;
  p.seed = SBITS_SEED_RANDOM;
  return p;
}

SBITS_API sbits_generate_params sbits_generate_default_params(void) {
  sbits_generate_params p;
  std::memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.max_tokens = 256;
  return p;
}

SBITS_API sbits_status sbits_session_create(const sbits_model* model, const sbits_session_params* params,
                                            sbits_session** out_session) {
  if (out_session) *out_session = nullptr;
  return static_cast<sbits_status>(guarded("sbits_session_create", SBITS_ERR_BACKEND, [&]() -> int32_t {
    std::shared_ptr<sbits_model> m = get_model(model);
    require(out_session != nullptr, "out_session is NULL");
    const sbits_session_params p = read_params(params, sbits_session_default_params(), "sbits_session_params");
    const sbits::SessionOptions options = session_options(*m, p);
    auto s = std::make_shared<sbits_session>();
    s->model = m;
    s->session = std::make_unique<sbits::Session>(*m->model, options);
    *out_session = sessions().add(std::move(s));
    return SBITS_OK;
  }));
}

SBITS_API sbits_status sbits_session_reset(sbits_session* session) {
  return static_cast<sbits_status>(guarded("sbits_session_reset", SBITS_ERR_INTERNAL, [&]() -> int32_t {
    std::shared_ptr<sbits_session> s = get_session(session);
    BusyGuard busy(*s);
    s->session->reset();
    return SBITS_OK;
  }));
}

SBITS_API sbits_status sbits_session_free(sbits_session* session) {
  if (!session) return SBITS_OK;
  return static_cast<sbits_status>(guarded("sbits_session_free", SBITS_ERR_INTERNAL, [&]() -> int32_t {
    std::shared_ptr<sbits_session> s = get_session(session);
    // Taken for good: a call that looked the handle up just before the removal finds it busy
    // and fails instead of using a session that is going away.
    if (s->busy.exchange(true))
      throw ApiError(SBITS_ERR_BUSY, "the session is in use by another call; free it after that call returns");
    sessions().remove(session);
    return SBITS_OK;
  }));
}

SBITS_API int32_t sbits_session_n_past(const sbits_session* session) {
  return guarded("sbits_session_n_past", SBITS_ERR_INTERNAL, [&]() -> int32_t {
    std::shared_ptr<sbits_session> s = get_session(session);
    BusyGuard busy(*s);
    return s->session->n_past();
  });
}

SBITS_API sbits_status sbits_session_cancel(sbits_session* session) {
  return static_cast<sbits_status>(guarded("sbits_session_cancel", SBITS_ERR_INTERNAL, [&]() -> int32_t {
    std::shared_ptr<sbits_session> s = get_session(session);
    std::lock_guard<std::mutex> lock(s->cancel_mutex);
    if (s->generating) s->cancel.store(true);
    return SBITS_OK;
  }));
}

SBITS_API sbits_status sbits_session_generate(sbits_session* session, const int32_t* prompt, int32_t n_prompt,
                                              const sbits_sampling_params* sampling,
                                              const sbits_generate_params* params, sbits_token_callback callback,
                                              void* user_data, sbits_generate_result* result) {
  return static_cast<sbits_status>(guarded("sbits_session_generate", SBITS_ERR_INTERNAL, [&]() -> int32_t {
    std::shared_ptr<sbits_session> s = get_session(session);
    BusyGuard busy(*s);
    require(n_prompt >= 0, fmt::format("n_prompt is negative ({})", n_prompt));
    require(prompt || n_prompt == 0, fmt::format("prompt is NULL with n_prompt = {}", n_prompt));
    const GenerateCall call{std::span<const int32_t>(prompt, static_cast<size_t>(n_prompt)), sampling, params,
                            callback, user_data, result};
    return generate(*s, call);
  }));
}

}  // extern "C"
