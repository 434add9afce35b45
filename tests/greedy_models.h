// tech-llama-58m quantized by sbits-quantize (tl-2.5.sbits and tl-4.0.sbits, not in git: 18-30 MB
// each) decoded greedily on the CPU and on a GPU backend, 48 tokens after each of the five
// reference prompts (reference_outputs.json), compared token by token. A GPU backend sums in
// another order (and may round x to f16 or to integer digits), so the two can part where the
// CPU's two best logits are nearly equal: a parting passes only when, at that position, the
// CPU's logits of the two candidates are within kGreedyNearTie (printed); anything else fails.
//
// The models: $SBITS_TL_MODELS or <source>/.devcarry/models (`sbits-quantize
// models/tech-llama-58m -o tl-2.5.sbits --bpw 2.5 --calib text/techdocs_calib.txt`, and
// --bpw 4.0). exit_unless_tl_models() ends the test binary with 77 (skipped) without them.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/session.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/test_data.h"

namespace sbits::test {

constexpr double kGreedyNearTie = 0.05;  // logits of ~10: the rounding of x moves them by ~1e-2
constexpr int kGreedyTokens = 48;
constexpr const char* kTlModels[] = {"tl-2.5.sbits", "tl-4.0.sbits"};

inline std::string tl_models_dir() {
  const char* env = std::getenv("SBITS_TL_MODELS");
  return env ? env : std::string(SBITS_SOURCE_DIR) + "/.devcarry/models";
}

inline bool exit_unless_tl_models() {
  for (const char* m : kTlModels)
    if (!std::filesystem::exists(tl_models_dir() + "/" + m)) {
      std::fprintf(stderr, "%s/%s not found: skipping\n", tl_models_dir().c_str(), m);
      std::fflush(stderr);
      std::_Exit(77);
    }
  return true;
}

inline std::vector<int32_t> greedy_tokens(Session& s, const std::vector<int32_t>& prompt) {
  s.reset();
  SamplerParams p;
  p.temperature = 0;
  Sampler sampler(p, int32_t(s.model().config().vocab_size));
  std::vector<int32_t> out;
  s.generate(prompt, kGreedyTokens, sampler, [&](int32_t id, std::string_view) {
    if (id >= 0) out.push_back(id);
    return true;
  });
  return out;
}

// Both tl models on the CPU and on gpu (named gpu_name in the printed partings).
template <class MakeGpu>
void check_tl_greedy(MakeGpu&& make_gpu, const char* gpu_name) {
  std::ifstream in(data_path("models/tech-llama-58m/reference_outputs.json"));
  const nlohmann::json ref = nlohmann::json::parse(in);
  for (const char* name : kTlModels) {
    auto cpu_be = kernels::make_cpu_backend(2);
    auto gpu_be = make_gpu();
    const std::string path = tl_models_dir() + "/" + name;
    auto cpu_model = Model::load(path, *cpu_be);
    auto gpu_model = Model::load(path, *gpu_be);
    Session cs(*cpu_model, SessionOptions{256, kernels::KvType::f16, 64});
    Session gs(*gpu_model, SessionOptions{256, kernels::KvType::f16, 64});
    int same = 0, ties = 0;
    for (const auto& g : ref["generations"]) {
      const std::vector<int32_t> prompt = g["prompt_ids"].get<std::vector<int32_t>>();
      const std::vector<int32_t> a = greedy_tokens(cs, prompt), b = greedy_tokens(gs, prompt);
      INFO(name, " prompt '", g["prompt"].get<std::string>(), "'");
      REQUIRE(a.size() == b.size());
      size_t i = 0;
      while (i < a.size() && a[i] == b[i]) ++i;
      if (i == a.size()) {
        ++same;
        continue;
      }
      // Where they part: the CPU's logits after the common prefix.
      std::vector<int32_t> prefix = prompt;
      prefix.insert(prefix.end(), a.begin(), a.begin() + ptrdiff_t(i));
      cs.reset();
      const std::span<float> l = cs.feed(prefix);
      const double gap = std::fabs(double(l[size_t(a[i])]) - double(l[size_t(b[i])]));
      std::printf("%s '%s': parts at token %zu: cpu %d (%.4f), %s %d (%.4f), gap %.4f\n", name,
                  g["prompt"].get<std::string>().c_str(), i, a[i], l[size_t(a[i])], gpu_name, b[i], l[size_t(b[i])],
                  gap);
      CHECK(gap <= kGreedyNearTie);
      ++ties;
    }
    std::printf("%s on %s: %d of 5 prompts the same for %d tokens, %d parted at a near tie\n", name, gpu_name, same,
                kGreedyTokens, ties);
  }
}

}  // namespace sbits::test
