// kv_store and attention of the CUDA backend against the CPU backend: several slots at
// different positions in one batch, grouped-query attention, f16 and f32 caches, head sizes
// that do and do not allow 16-byte loads, and contexts long enough to split across blocks.
// Outputs are convex combinations of values in [-1, 1]: the tolerance is absolute, 2e-5 (f32
// softmax, different summation order; the caches hold identical f16 values).
#include <doctest/doctest.h>

#include <algorithm>

#include "tests/cuda/cuda_test_util.h"

namespace sbits::kernels::test {
namespace {

struct Config {
  int n_heads, n_kv_heads, head_dim, n_ctx;
  KvType type;
};

// Attention of `rows` over layer 1 of caches filled (by kv_store, in 37-row chunks as a
// prefill would) to position len[s] - 1 of slot s: the CUDA result against the CPU's, then
// with q and out the same buffer.
void check_rows(const Config& c, const int (&len)[3], const std::vector<RowInfo>& rows, std::mt19937_64& rng) {
  auto cpu = make_cpu_backend(2);
  auto gpu = make_cuda();
  const KvCacheDesc d{.n_layers = 2, .n_slots = 3, .n_ctx = c.n_ctx, .n_kv_heads = c.n_kv_heads, .head_dim = c.head_dim,
                      .type = c.type};
  auto cc = cpu->create_kv_cache(d), cg = gpu->create_kv_cache(d);
  const int kv_width = c.n_kv_heads * c.head_dim, q_width = c.n_heads * c.head_dim;
  for (int s = 0; s < 3; ++s) {
    for (int p0 = 0; p0 < len[s]; p0 += 37) {
      const int n = std::min(37, len[s] - p0);
      std::vector<RowInfo> stored;
      for (int i = 0; i < n; ++i) stored.push_back({s, p0 + i});
      const std::vector<float> k = random_floats(rng, size_t(n * kv_width)), v = random_floats(rng, size_t(n * kv_width));
      auto kc = make_buffer(*cpu, k), vc = make_buffer(*cpu, v), kg = make_buffer(*gpu, k), vg = make_buffer(*gpu, v);
      cpu->kv_store(*cc, 1, *kc, *vc, n, stored.data());
      gpu->kv_store(*cg, 1, *kg, *vg, n, stored.data());
    }
  }
  const int n = int(rows.size());
  const std::vector<float> q = random_floats(rng, size_t(n * q_width), -2.0f, 2.0f);
  auto qc = make_buffer(*cpu, q), qg = make_buffer(*gpu, q);
  auto oc = cpu->alloc(size_t(n * q_width)), og = gpu->alloc(size_t(n * q_width));
  const AttentionShape shape{c.n_heads, c.n_kv_heads, c.head_dim};
  cpu->attention(*qc, *cc, 1, n, rows.data(), shape, *oc);
  gpu->attention(*qg, *cg, 1, n, rows.data(), shape, *og);
  INFO("heads ", c.n_heads, "/", c.n_kv_heads, " head_dim ", c.head_dim, " n_ctx ", c.n_ctx, " f16 ",
       c.type == KvType::f16, " rows ", n);
  CHECK(max_abs_diff(read_all(*gpu, *og), read_all(*cpu, *oc)) <= 2e-5);
  gpu->attention(*qg, *cg, 1, n, rows.data(), shape, *qg);
  CHECK(max_abs_diff(read_all(*gpu, *qg), read_all(*cpu, *oc)) <= 2e-5);
}

// One batch: rows of every slot at various positions (decode and prefill rows mixed).
void check_attention(const Config& c, std::mt19937_64& rng) {
  const int len[3] = {c.n_ctx, std::max(1, c.n_ctx / 2), 1};
  check_rows(c, len, {{0, c.n_ctx - 1}, {2, 0}, {1, len[1] - 1}, {0, 0}, {0, c.n_ctx / 3}}, rng);
}

}  // namespace

TEST_CASE("cuda: attention over the KV cache matches the CPU") {
  std::mt19937_64 rng(11);
  const Config configs[] = {
      {8, 4, 8, 40, KvType::f16},      {8, 4, 8, 40, KvType::f32},     {4, 4, 64, 100, KvType::f16},
      {6, 2, 6, 70, KvType::f16},      {6, 2, 6, 70, KvType::f32},     {32, 8, 128, 1000, KvType::f16},
      {8, 8, 128, 4100, KvType::f16},  {2, 1, 256, 300, KvType::f32},  {5, 5, 34, 129, KvType::f16},
  };
  for (const Config& c : configs) check_attention(c, rng);
}

// A prompt's rows (n > 8, one slot: attention_prefill.cu at head_dim 64 and 128), after
// earlier positions of the slot are cached, with a partial last block of 64 rows; in order, in
// shuffled order, and rows of two slots (attention.cu).
TEST_CASE("cuda: prefill attention over a prompt's rows matches the CPU") {
  std::mt19937_64 rng(13);
  const Config configs[] = {{32, 8, 128, 400, KvType::f16}, {4, 2, 64, 400, KvType::f32},
                            {8, 8, 128, 400, KvType::f32},  {6, 3, 64, 400, KvType::f16},
                            {4, 4, 96, 400, KvType::f16}};
  const int len[3] = {300, 200, 1};
  for (const Config& c : configs) {
    std::vector<RowInfo> rows;
    for (int p = 130; p < 300; ++p) rows.push_back({0, p});  // 170 rows: 3 blocks, the last of 42
    check_rows(c, len, rows, rng);
    std::shuffle(rows.begin(), rows.end(), rng);
    check_rows(c, len, rows, rng);
    rows.resize(40);
    for (int p = 0; p < 20; ++p) rows.push_back({1, 180 + p});
    check_rows(c, len, rows, rng);
  }
}

TEST_CASE("cuda: kv_store and attention refuse bad rows, layers and unstored positions") {
  auto gpu = make_cuda();
  KvCacheDesc d{.n_layers = 2, .n_slots = 2, .n_ctx = 8, .n_kv_heads = 1, .head_dim = 4};
  auto c = gpu->create_kv_cache(d);
  auto k = gpu->alloc(8), q = gpu->alloc(8), out = gpu->alloc(8);
  const RowInfo bad_slot{2, 0}, bad_pos{0, 8}, ok{0, 0}, later{0, 3};
  CHECK_THROWS_WITH_AS(gpu->kv_store(*c, 0, *k, *k, 1, &bad_slot), doctest::Contains("slot = 2 is outside"), KernelError);
  CHECK_THROWS_WITH_AS(gpu->kv_store(*c, 0, *k, *k, 1, &bad_pos), doctest::Contains("pos = 8 is outside"), KernelError);
  CHECK_THROWS_WITH_AS(gpu->kv_store(*c, 2, *k, *k, 1, &ok), doctest::Contains("layer 2 is outside"), KernelError);
  gpu->kv_store(*c, 0, *k, *k, 1, &ok);
  const AttentionShape shape{2, 1, 4};
  CHECK_THROWS_WITH_AS(gpu->attention(*q, *c, 0, 1, &later, shape, *out), doctest::Contains("not stored yet"),
                       KernelError);
  gpu->attention(*q, *c, 0, 1, &ok, shape, *out);
  d.head_dim = 512;
  CHECK_THROWS_WITH_AS(gpu->create_kv_cache(d), doctest::Contains("head_dim 512 exceeds"), KernelError);
}

// rope_and_store: CUDA's one-kernel version against the CPU's three ops (the interface's
// default), on q, k and the cache (read back through attention); then with q and k the same
// buffer, which CUDA hands to the three ops in order (the fused kernel would race).
TEST_CASE("cuda: rope_and_store equals rope, rope and kv_store, also with aliased buffers") {
  std::mt19937_64 rng(5);
  auto cpu = make_cpu_backend(2);
  auto gpu = make_cuda();
  const KvCacheDesc d{.n_layers = 2, .n_slots = 2, .n_ctx = 64, .n_kv_heads = 2, .head_dim = 16};
  const AttentionShape shape{6, 2, 16};
  const std::vector<RowInfo> rows = {{0, 0}, {0, 1}, {1, 0}, {0, 2}, {1, 1}};
  const int n = int(rows.size()), qw = shape.n_heads * shape.head_dim, kw = shape.n_kv_heads * shape.head_dim;
  const std::vector<float> q0 = random_floats(rng, size_t(n * qw)), k0 = random_floats(rng, size_t(n * kw)),
                           v0 = random_floats(rng, size_t(n * kw));
  for (const RopeStyle style : {RopeStyle::neox, RopeStyle::interleaved}) {
    std::vector<std::vector<float>> results[2];
    int i = 0;
    for (Backend* be : {cpu.get(), gpu.get()}) {
      auto cache = be->create_kv_cache(d);
      auto q = make_buffer(*be, q0), k = make_buffer(*be, k0), v = make_buffer(*be, v0), out = be->alloc(size_t(n * qw));
      be->rope_and_store(*q, *k, *v, *cache, 1, n, rows.data(), shape, 10000.0f, style);
      be->attention(*q, *cache, 1, n, rows.data(), shape, *out);
      results[i++] = {read_all(*be, *q), read_all(*be, *k), read_all(*be, *out)};
    }
    INFO("neox ", style == RopeStyle::neox);
    for (int j = 0; j < 3; ++j) CHECK(max_abs_diff(results[1][size_t(j)], results[0][size_t(j)]) <= 2e-5);
  }
  // q and k aliased (one head each way): rotated twice, as by two rope calls.
  const AttentionShape one{2, 2, 16};
  const std::vector<float> x0 = random_floats(rng, size_t(n * kw));
  std::vector<float> got[2];
  int i = 0;
  for (Backend* be : {cpu.get(), gpu.get()}) {
    auto cache = be->create_kv_cache(d);
    auto x = make_buffer(*be, x0), v = make_buffer(*be, v0);
    be->rope_and_store(*x, *x, *v, *cache, 0, n, rows.data(), one, 10000.0f, RopeStyle::neox);
    got[i++] = read_all(*be, *x);
  }
  CHECK(max_abs_diff(got[1], got[0]) <= 2e-5);
}

}  // namespace sbits::kernels::test
