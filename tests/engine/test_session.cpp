// Sessions and the forward pass: chunked prefill, batched decode over slots, context policy.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/backends.h"
#include "engine/session.h"
#include "tests/engine/engine_test_models.h"

namespace {

using namespace sbits;

// f32 KV cache and the same weights: chunking and batching change only summation grouping.
constexpr float kSameMathTolerance = 1e-4f;

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
  float d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

struct Fixture {
  std::unique_ptr<kernels::Backend> backend = make_backend("cpu");
  std::unique_ptr<Model> model = Model::load(test::engine_model("stories260K.sbits"), *backend);
};

}  // namespace

TEST_CASE("prefill in chunks equals token-by-token decode") {
  Fixture f;
  std::vector<int32_t> ids = f.model->tokenizer().encode("Once upon a time, there was a little dog named Max.", true);
  REQUIRE(ids.size() > 10);
  Session chunked(*f.model, SessionOptions{64, kernels::KvType::f32, 4});
  std::span<float> la = chunked.feed(ids);
  std::vector<float> chunked_logits(la.begin(), la.end());

  Session single(*f.model, SessionOptions{64, kernels::KvType::f32, 1});
  std::span<float> lb;
  for (int32_t t : ids) lb = single.feed(std::span<const int32_t>(&t, 1));
  CHECK(max_abs_diff(chunked_logits, lb) < kSameMathTolerance);
}

TEST_CASE("the prefill chunk: the backend's choice unless given") {
  Fixture f;
  CHECK(Session(*f.model, SessionOptions{}).max_batch_rows() == f.backend->preferred_prefill_rows());
  CHECK(f.backend->preferred_prefill_rows() == 64);  // the CPU's
  CHECK(Session(*f.model, SessionOptions{64, kernels::KvType::f32, 7}).max_batch_rows() == 7);
  CHECK_THROWS_WITH_AS(Session(*f.model, SessionOptions{64, kernels::KvType::f32, -1}),
                       doctest::Contains("max_rows must be >= 1, got -1"), EngineError);
}

TEST_CASE("batched decode over several slots equals each sequence alone") {
  Fixture f;
  const std::vector<std::vector<int32_t>> prompts = {
      f.model->tokenizer().encode("Once upon a time", true),
      f.model->tokenizer().encode("The cat sat", true),
      f.model->tokenizer().encode("Lily and Ben went to the park to play", true)};
  const size_t vocab = f.model->config().vocab_size;
  Forward fwd(*f.model, 16);
  auto cache = fwd.make_kv_cache(3, 32, kernels::KvType::f32);
  // Prefill each slot separately, then one batched step with one row per slot.
  std::vector<float> scratch(16 * vocab);
  for (int s = 0; s < 3; ++s) {
    std::vector<kernels::RowInfo> rows;
    for (size_t i = 0; i < prompts[s].size(); ++i) rows.push_back({s, static_cast<int32_t>(i)});
    fwd.run(*cache, prompts[s], rows, {}, scratch.data());
  }
  const std::vector<int32_t> next = {100, 200, 300};
  std::vector<kernels::RowInfo> rows;
  for (int s = 0; s < 3; ++s) rows.push_back({s, static_cast<int32_t>(prompts[s].size())});
  const std::vector<int32_t> all_rows = {0, 1, 2};
  std::vector<float> batched(3 * vocab);
  fwd.run(*cache, next, rows, all_rows, batched.data());

  for (int s = 0; s < 3; ++s) {
    Session alone(*f.model, SessionOptions{32, kernels::KvType::f32, 16});
    alone.feed(prompts[s]);
    std::span<float> l = alone.feed(std::span<const int32_t>(&next[s], 1));
    CHECK(max_abs_diff(std::span<const float>(batched).subspan(s * vocab, vocab), l) < kSameMathTolerance);
  }
}

TEST_CASE("feeding past the context length is an error that names the numbers") {
  Fixture f;
  Session s(*f.model, SessionOptions{8, kernels::KvType::f16, 4});
  std::vector<int32_t> ids(9, 5);
  CHECK_THROWS_WITH_AS(s.feed(ids), doctest::Contains("do not fit in 8 positions"), EngineError);
  CHECK(s.n_past() == 0);
  s.feed(std::span<const int32_t>(ids).subspan(0, 8));
  CHECK(s.n_past() == 8);
  CHECK_THROWS_AS(s.feed(std::span<const int32_t>(ids).subspan(0, 1)), EngineError);
}

TEST_CASE("generate stops at max_tokens, at the context end, and on cancel") {
  Fixture f;
  SamplerParams greedy;
  greedy.temperature = 0;
  Sampler sampler(greedy, static_cast<int32_t>(f.model->config().vocab_size));
  std::vector<int32_t> bos = {f.model->tokenizer().bos_id()};

  Session s(*f.model, SessionOptions{32, kernels::KvType::f16, 8});
  int count = 0;
  GenerationStats st = s.generate(bos, 10, sampler, [&](int32_t id, std::string_view) { count += id >= 0; return true; });
  CHECK(st.stop == StopReason::length);
  CHECK(count == 10);
  CHECK(st.generated_tokens == 10);

  s.reset();
  sampler.reset();
  st = s.generate(bos, 100, sampler, [](int32_t, std::string_view) { return true; });
  CHECK(st.stop == StopReason::context_full);
  CHECK(s.n_past() == 32);

  s.reset();
  st = s.generate(bos, 100, sampler, [&](int32_t, std::string_view) { s.cancel(); return true; });
  CHECK(st.stop == StopReason::cancelled);
  CHECK(st.generated_tokens == 1);

  // A cancel stops a prefill at its next chunk boundary (here before the first of 3 chunks).
  s.reset();
  const std::vector<int32_t> prompt(20, bos[0]);
  s.cancel();
  count = 0;
  st = s.generate(prompt, 10, sampler, [&](int32_t, std::string_view) { return ++count, true; });
  CHECK(st.stop == StopReason::cancelled);
  CHECK(st.generated_tokens == 0);
  CHECK(count == 0);
  CHECK(s.n_past() == 0);
  s.cancel();
  CHECK_THROWS_AS(s.feed(prompt), SessionCancelled);
  CHECK(s.n_past() == 0);
  CHECK(s.feed(prompt).size() == f.model->config().vocab_size);  // the cancel was consumed
  CHECK(s.n_past() == 20);
}

// generate() takes a top-k sampler's tokens from the backend's top-k (feed_top_k, then
// Sampler::sample_top) and a penalised one's from all the logits: both must choose as a sampler
// reading every logit after feed().
TEST_CASE("sampled generate equals feed() and sample() on every logit, with and without penalties") {
  Fixture f;
  const auto vocab = static_cast<int32_t>(f.model->config().vocab_size);
  const std::vector<int32_t> prompt = {f.model->tokenizer().bos_id(), 30, 47};
  for (const float penalty : {1.0f, 1.3f}) {
    SamplerParams p;  // temperature 0.8, top-k 40, top-p 0.95, min-p 0.05
    p.seed = 7;
    p.repeat_penalty = penalty;
    Sampler via_generate(p, vocab), via_feed(p, vocab);
    CHECK(via_generate.candidates_needed(kernels::Backend::kMaxTopK) == (penalty == 1.0f ? 40 : 0));
    const SessionOptions options{64, kernels::KvType::f16, 8};
    Session a(*f.model, options), b(*f.model, options);
    std::vector<int32_t> got;
    a.generate(prompt, 30, via_generate,
               [&](int32_t id, std::string_view) { return id < 0 || (got.push_back(id), true); });
    std::vector<int32_t> want;
    for (int32_t t : prompt) via_feed.accept(t);
    std::span<float> logits = b.feed(prompt);
    while (want.size() < got.size()) {
      const int32_t id = via_feed.sample(logits);
      via_feed.accept(id);
      want.push_back(id);
      logits = b.feed(std::span(&want.back(), 1));
    }
    CAPTURE(penalty);
    CHECK(got.size() == 30);
    CHECK(got == want);
  }
}

TEST_CASE("forward rejects bad token ids and positions instead of reading out of bounds") {
  Fixture f;
  Forward fwd(*f.model, 4);
  auto cache = fwd.make_kv_cache(1, 8, kernels::KvType::f16);
  std::vector<kernels::RowInfo> rows = {{0, 0}};
  std::vector<float> out(f.model->config().vocab_size);
  const std::vector<int32_t> bad_id = {static_cast<int32_t>(f.model->config().vocab_size)};
  CHECK_THROWS_WITH_AS(fwd.run(*cache, bad_id, rows, {}, out.data()), doctest::Contains("outside the vocabulary"),
                       EngineError);
  const std::vector<int32_t> ok = {1};
  rows[0].pos = 8;
  CHECK_THROWS_WITH_AS(fwd.run(*cache, ok, rows, {}, out.data()), doctest::Contains("past the context length"),
                       EngineError);
  rows[0] = {1, 0};
  CHECK_THROWS_AS(fwd.run(*cache, ok, rows, {}, out.data()), EngineError);
}
