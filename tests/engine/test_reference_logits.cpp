// tech-llama-58m (bf16) against the logits and greedy tokens that Hugging Face transformers
// computed in float32 (../shared/data/models/tech-llama-58m/reference_outputs.json).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/backends.h"
#include "engine/forward.h"
#include "engine/session.h"
#include "tests/engine/engine_test_models.h"
#include "tests/test_data.h"

namespace {

using namespace sbits;

// The acceptance tolerance of the CPU reference engine against transformers' float32 forward
// pass: bf16 weights are exact in both, so what remains is f32 summation order and the f16 KV cache.
constexpr double kLogitTolerance = 2e-2;

std::vector<float> read_npy_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(all.size() > 10);
  REQUIRE(all.compare(0, 6, "\x93NUMPY") == 0);
  const size_t header_len = static_cast<uint8_t>(all[8]) | (static_cast<uint8_t>(all[9]) << 8);
  const std::string header = all.substr(10, header_len);
  REQUIRE(header.find("'<f4'") != std::string::npos);
  const size_t data = 10 + header_len;
  std::vector<float> v((all.size() - data) / 4);
  std::memcpy(v.data(), all.data() + data, v.size() * 4);
  return v;
}

nlohmann::json reference() {
  std::ifstream in(test::data_path("models/tech-llama-58m/reference_outputs.json"));
  return nlohmann::json::parse(in);
}

// Logits at every position of `ids` (a fresh sequence).
std::vector<float> all_logits(const Model& m, const std::vector<int32_t>& ids) {
  Forward fwd(m, static_cast<int>(ids.size()));
  auto cache = fwd.make_kv_cache(1, 64, kernels::KvType::f16);
  std::vector<kernels::RowInfo> rows(ids.size());
  std::vector<int32_t> logit_rows(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    rows[i] = {0, static_cast<int32_t>(i)};
    logit_rows[i] = static_cast<int32_t>(i);
  }
  std::vector<float> out(ids.size() * m.config().vocab_size);
  fwd.run(*cache, ids, rows, logit_rows, out.data());
  return out;
}

}  // namespace

TEST_CASE("tech-llama-58m bf16: top-10 logits at every prompt position match transformers") {
  auto backend = make_backend("cpu");
  auto model = Model::load(test::engine_model("tech-llama-58m-bf16.sbits"), *backend);
  const size_t vocab = model->config().vocab_size;
  double worst = 0;
  const nlohmann::json ref = reference();  // outlives the loop (a temporary in the range would not)
  for (const auto& g : ref["generations"]) {
    std::vector<int32_t> ids = g["prompt_ids"].get<std::vector<int32_t>>();
    CHECK(model->tokenizer().encode(g["prompt"].get<std::string>(), true) == ids);
    std::vector<float> logits = all_logits(*model, ids);
    const auto& top = g["top10_per_position"];
    REQUIRE(top.size() == ids.size());
    for (size_t p = 0; p < ids.size(); ++p) {
      for (const auto& pair : top[p]) {
        const int id = pair[0].get<int>();
        const double want = pair[1].get<double>();
        const double got = logits[p * vocab + static_cast<size_t>(id)];
        worst = std::max(worst, std::abs(got - want));
        CHECK_MESSAGE(std::abs(got - want) <= kLogitTolerance,
                      "prompt '" << g["prompt"].get<std::string>() << "' position " << p << " token " << id);
      }
    }
  }
  MESSAGE("largest top-10 logit difference: " << worst);
}

TEST_CASE("tech-llama-58m bf16: all 32000 last-position logits of prompt 0 match transformers") {
  auto backend = make_backend("cpu");
  auto model = Model::load(test::engine_model("tech-llama-58m-bf16.sbits"), *backend);
  const std::vector<float> ref = read_npy_f32(test::data_path("models/tech-llama-58m/last_logits_prompt0.npy"));
  REQUIRE(ref.size() == model->config().vocab_size);
  std::vector<int32_t> ids = reference()["generations"][0]["prompt_ids"].get<std::vector<int32_t>>();
  std::vector<float> logits = all_logits(*model, ids);
  const float* last = logits.data() + (ids.size() - 1) * ref.size();
  double worst = 0;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::abs(static_cast<double>(last[i]) - ref[i]);
    worst = std::max(worst, d);
    bad += d > kLogitTolerance;
  }
  MESSAGE("largest last-position logit difference: " << worst);
  CHECK(bad == 0);
}

TEST_CASE("tech-llama-58m bf16: 48 greedy tokens for each reference prompt") {
  auto backend = make_backend("cpu");
  auto model = Model::load(test::engine_model("tech-llama-58m-bf16.sbits"), *backend);
  const nlohmann::json ref = reference();  // outlives the loop (a temporary in the range would not)
  for (const auto& g : ref["generations"]) {
    std::vector<int32_t> ids = g["prompt_ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> expected = g["greedy_ids"].get<std::vector<int32_t>>();
    Session s(*model, SessionOptions{256, kernels::KvType::f16, 64});
    std::span<float> logits = s.feed(ids);
    for (size_t step = 0; step < expected.size(); ++step) {
      const auto best = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      if (best != expected[step]) {
        // A mismatch is acceptable only at a near-tie: the two candidates within the tolerance.
        const double margin = logits[static_cast<size_t>(best)] - logits[static_cast<size_t>(expected[step])];
        MESSAGE("prompt '" << g["prompt"].get<std::string>() << "' step " << step << ": got " << best
                           << ", reference " << expected[step] << ", logit margin " << margin);
        CHECK(margin <= kLogitTolerance);
        break;  // the continuations diverge from here
      }
      const int32_t next[1] = {best};
      if (step + 1 < expected.size()) logits = s.feed(next);
    }
  }
}
