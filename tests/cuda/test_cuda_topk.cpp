// The CUDA backend's top_k against the host default (Backend::top_k, which the CPU backend
// uses): the same ids and values exactly, for widths around the block size and a vocabulary,
// k from 1 to 64, rows with many equal values (ties go to the lower index), infinities, and
// several rows at once.
#include <doctest/doctest.h>

#include <cmath>

#include "tests/cuda/cuda_test_util.h"

namespace sbits::kernels::test {
namespace {

struct TopK {
  std::vector<int32_t> ids;
  std::vector<float> vals;
};

TopK run_top_k(Backend& be, const std::vector<float>& logits, int n, int width, int k) {
  auto buf = make_buffer(be, logits);
  TopK r{std::vector<int32_t>(size_t(n) * size_t(k), -7), std::vector<float>(size_t(n) * size_t(k), NAN)};
  be.top_k(*buf, n, width, k, r.ids.data(), r.vals.data());
  return r;
}

// Logits drawn from `levels` distinct values (few levels: many ties), a few infinities.
std::vector<float> random_logits(std::mt19937_64& rng, size_t count, int levels) {
  std::uniform_int_distribution<int> level(0, levels - 1);
  std::uniform_int_distribution<int> rare(0, 999);
  std::vector<float> v(count);
  for (float& x : v) {
    x = float(level(rng)) * 0.25f - 8.0f;
    const int r = rare(rng);
    if (r == 0) x = -INFINITY;
    if (r == 1) x = INFINITY;
  }
  return v;
}

}  // namespace

TEST_CASE("cuda top_k equals the host default: ids and values, ties to the lower index") {
  auto cpu = make_cpu_backend(1);
  auto gpu = make_cuda();
  std::mt19937_64 rng(5);
  for (int width : {1, 2, 31, 511, 512, 513, 1000, 32000, 50257})
    for (int k : {1, 2, 7, 40, 64})
      for (int levels : {3, 1000, 1 << 30}) {
        if (k > width) continue;
        for (int n : {1, 3}) {
          const std::vector<float> logits = random_logits(rng, size_t(n) * size_t(width), levels);
          const TopK want = run_top_k(*cpu, logits, n, width, k), got = run_top_k(*gpu, logits, n, width, k);
          INFO("width ", width, " k ", k, " levels ", levels, " n ", n);
          CHECK(got.ids == want.ids);
          bool same = true;
          for (size_t i = 0; i < want.vals.size(); ++i) same = same && got.vals[i] == want.vals[i];
          CHECK(same);
        }
      }
}

TEST_CASE("cuda top_k refuses bad arguments like the host default") {
  auto gpu = make_cuda();
  auto buf = gpu->alloc(100);
  int32_t ids[65];
  float vals[65];
  CHECK_THROWS_WITH_AS(gpu->top_k(*buf, 1, 100, 65, ids, vals), doctest::Contains("1 <= k <= min(width, 64)"),
                       KernelError);
  CHECK_THROWS_WITH_AS(gpu->top_k(*buf, 1, 10, 11, ids, vals), doctest::Contains("k = 11"), KernelError);
  CHECK_THROWS_WITH_AS(gpu->top_k(*buf, 2, 60, 1, ids, vals), doctest::Contains("expected at least 120"), KernelError);
}

}  // namespace sbits::kernels::test
