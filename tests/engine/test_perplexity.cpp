// Perplexity protocols on a short prefix (the full-corpus figure is test_perplexity_full, 'slow').
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "engine/backends.h"
#include "engine/perplexity.h"
#include "tests/engine/engine_test_models.h"
#include "tests/test_data.h"

namespace {

using namespace sbits;

std::string read_text(const std::string& rel) {
  std::ifstream in(test::data_path(rel), std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("docs protocol scores the 148,999 tokens that the reference scored") {
  auto backend = make_backend("cpu");
  auto model = Model::load(test::engine_model("tech-llama-58m-bf16.sbits"), *backend);
  std::vector<int32_t> ids = perplexity_tokens(model->tokenizer(), read_text("text/techdocs_val.txt"),
                                               PerplexityProtocol::docs);
  CHECK(ids.size() - 1 == 148999);  // reference_outputs.json corpus_val.tokens
  CHECK(ids.front() == 1);
  CHECK(ids.back() == 2);
}

TEST_CASE("perplexity on the first window is that of a trained model, and f16 KV agrees with f32") {
  auto backend = make_backend("cpu");
  auto model = Model::load(test::engine_model("tech-llama-58m-bf16.sbits"), *backend);
  std::vector<int32_t> ids = perplexity_tokens(model->tokenizer(), read_text("text/techdocs_val.txt"),
                                               PerplexityProtocol::docs);
  PerplexityOptions o;
  o.ctx = 128;
  o.max_tokens = 256;
  PerplexityResult f16 = evaluate_perplexity(*model, ids, o);
  o.kv_type = kernels::KvType::f32;
  PerplexityResult f32 = evaluate_perplexity(*model, ids, o);
  CHECK(f16.tokens == 256);
  // A uniform guess over 32000 tokens scores 32000; the model's full-corpus figure is 17.24.
  CHECK(f16.ppl > 3.0);
  CHECK(f16.ppl < 60.0);
  CHECK(std::abs(f16.nll - f32.nll) < 2e-3);
  CHECK(f16.ppl_error > 0.0);
}

TEST_CASE("llamacpp protocol scores the second half of each chunk") {
  auto backend = make_backend("cpu");
  auto model = Model::load(test::engine_model("stories260K.sbits"), *backend);
  std::string text = read_text("text/tinystories_val_a.txt").substr(0, 20000);
  std::vector<int32_t> ids = perplexity_tokens(model->tokenizer(), text, PerplexityProtocol::llamacpp);
  PerplexityOptions o;
  o.protocol = PerplexityProtocol::llamacpp;
  o.ctx = 64;
  PerplexityResult r = evaluate_perplexity(*model, ids, o);
  CHECK(r.tokens == (ids.size() / 64) * 31);
  CHECK(r.ppl > 1.0);
  CHECK(r.ppl < 30.0);
}

TEST_CASE("too short a text or too long a window is an error, not garbage") {
  auto backend = make_backend("cpu");
  auto model = Model::load(test::engine_model("stories260K.sbits"), *backend);
  PerplexityOptions o;
  o.protocol = PerplexityProtocol::llamacpp;
  o.ctx = 64;
  CHECK_THROWS_AS(evaluate_perplexity(*model, {1, 2, 3}, o), EngineError);
  o.ctx = 100000;
  CHECK_THROWS_WITH_AS(evaluate_perplexity(*model, std::vector<int32_t>(10, 5), o),
                       doctest::Contains("exceeds the model's context length"), EngineError);
}
