// tech-llama-58m quantized (sbits-quantize at 2.5 and 4.0 bits per weight) decodes the same greedy tokens
// on CUDA as on the CPU for the five reference prompts (reference_outputs.json), 48 tokens each.
// CUDA multiplies x rounded to f16 and sums in another order, so the two can part at a near
// tie: a difference passes only where the CPU's logits of the two candidates are within
// kGreedyNearTie of each other at that position (printed); anything else fails. Also checks that
// the on-device greedy choice (Session::feed_greedy, Backend::top_k) is the argmax of the
// same backend's logits.
//
// The models: tests/greedy_models.h (without them, or without a GPU, the binary exits 77:
// skipped).
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/session.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/greedy_check.h"
#include "tests/greedy_models.h"
#include "tests/test_data.h"

namespace sbits::kernels::test {
namespace {

const bool kHaveModels = sbits::test::exit_unless_tl_models();

}  // namespace

TEST_CASE("tech-llama-58m quantized: CUDA greedy tokens equal the CPU's (up to a printed near tie)") {
  REQUIRE(kHaveModels);
  sbits::test::check_tl_greedy(make_cuda, "cuda");
}

TEST_CASE("tech-llama-58m quantized: feed_greedy picks the argmax of feed's logits, on CUDA and on the CPU") {
  REQUIRE(kHaveModels);
  std::ifstream in(sbits::test::data_path("models/tech-llama-58m/reference_outputs.json"));
  const nlohmann::json ref = nlohmann::json::parse(in);
  auto cpu_be = make_cpu_backend(2);
  auto gpu_be = make_cuda();
  for (Backend* be : {cpu_be.get(), gpu_be.get()}) {
    auto model = Model::load(sbits::test::tl_models_dir() + "/tl-4.0.sbits", *be);
    Session s(*model, SessionOptions{256, KvType::f16, 64});
    for (const auto& g : ref["generations"]) {
      const std::vector<int32_t> prompt = g["prompt_ids"].get<std::vector<int32_t>>();
      s.reset();
      const int32_t want = sbits::test::argmax(s.feed(prompt));
      s.reset();
      INFO(be->name(), " prompt '", g["prompt"].get<std::string>(), "'");
      CHECK(s.feed_greedy(prompt) == want);
    }
  }
}

}  // namespace sbits::kernels::test
