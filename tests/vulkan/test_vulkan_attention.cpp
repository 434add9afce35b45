// kv_store and attention of the Vulkan backend against the CPU backend: f16 and f32 caches,
// grouped-query shapes, head_dim up to 256, rows of several slots at positions across several
// 128-position blocks, prefill-sized batches (of one slot: attention_prefill.comp), out aliasing
// q. Tolerance 1e-5 of the output scale: both store the same f16 values (round to nearest even)
// and differ only in the order of the f32 sums and in exp's last bits.
#include <doctest/doctest.h>

#include "tests/vulkan/vulkan_test_util.h"

namespace sbits::kernels::test {
namespace {

struct AttnShape {
  int n_heads, n_kv_heads, head_dim;
};

KvCacheDesc cache_desc(int n_layers, int n_slots, int n_ctx, const AttnShape& s, KvType type) {
  return KvCacheDesc{.n_layers = n_layers,
                     .n_slots = n_slots,
                     .n_ctx = n_ctx,
                     .n_kv_heads = s.n_kv_heads,
                     .head_dim = s.head_dim,
                     .type = type};
}

// fn(type, shape, cpu cache, vk cache) for f16 and f32 caches of every shape, each cache of
// n_layers x n_slots x n_ctx positions made on both backends.
template <class Fn>
void for_each_cache(Backend& cpu, Backend& vk, std::initializer_list<AttnShape> shapes, int n_layers, int n_slots,
                    int n_ctx, Fn&& fn) {
  for (KvType type : {KvType::f16, KvType::f32})
    for (const AttnShape& s : shapes) {
      const KvCacheDesc d = cache_desc(n_layers, n_slots, n_ctx, s, type);
      auto cc = cpu.create_kv_cache(d), cg = vk.create_kv_cache(d);
      fn(type, s, *cc, *cg);
    }
}

// Stores `count` positions from `first` of `slot` into both caches (rows of random k, v).
void store(Backend& cpu, Backend& vk, KvCache& cc, KvCache& cg, int layer, int slot, int first, int count,
           int kv_width, std::mt19937_64& rng) {
  std::vector<RowInfo> rows(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) rows[size_t(i)] = {slot, first + i};
  const std::vector<float> k = random_floats(rng, size_t(count * kv_width), -2.0f, 2.0f);
  const std::vector<float> v = random_floats(rng, size_t(count * kv_width));
  auto kc = make_buffer(cpu, k), vc = make_buffer(cpu, v), kg = make_buffer(vk, k), vg = make_buffer(vk, v);
  cpu.kv_store(cc, layer, *kc, *vc, count, rows.data());
  vk.kv_store(cg, layer, *kg, *vg, count, rows.data());
}

// Attention of n rows on both backends against the same random q, within 1e-5 of the output
// scale; then again on Vulkan with out aliasing q (which also reuses the split counters).
void check_attention(Backend& cpu, Backend& vk, const KvCache& cc, const KvCache& cg, int layer,
                     const std::vector<RowInfo>& rows, int n, const AttnShape& s, std::mt19937_64& rng) {
  const std::vector<float> q = random_floats(rng, size_t(n * s.n_heads * s.head_dim), -2.0f, 2.0f);
  auto qc = make_buffer(cpu, q), qg = make_buffer(vk, q);
  auto oc = cpu.alloc(q.size()), og = vk.alloc(q.size());
  const AttentionShape sh{s.n_heads, s.n_kv_heads, s.head_dim};
  cpu.attention(*qc, cc, layer, n, rows.data(), sh, *oc);
  vk.attention(*qg, cg, layer, n, rows.data(), sh, *og);
  const std::vector<float> ref = read_all(cpu, *oc);
  CHECK(scaled_diff(read_all(vk, *og), ref) <= 1e-5);
  vk.attention(*qg, cg, layer, n, rows.data(), sh, *qg);
  CHECK(scaled_diff(read_all(vk, *qg), ref) <= 1e-5);
}

}  // namespace

TEST_CASE("vulkan: attention over the KV cache matches the CPU (1e-5), f16 and f32 caches") {
  auto cpu = make_cpu_backend(2);
  auto vk = make_vk();
  std::mt19937_64 rng(7);
  for_each_cache(*cpu, *vk, {{4, 4, 8}, {8, 2, 64}, {6, 3, 128}, {2, 1, 256}, {3, 1, 2}}, 2, 3, 300,
                 [&](KvType type, const AttnShape& s, KvCache& cc, KvCache& cg) {
    const int kv_width = s.n_kv_heads * s.head_dim, width = s.n_heads * s.head_dim;
    store(*cpu, *vk, cc, cg, 1, 0, 0, 270, kv_width, rng);  // prefill of slot 0
    store(*cpu, *vk, cc, cg, 1, 2, 0, 10, kv_width, rng);
    store(*cpu, *vk, cc, cg, 1, 2, 10, 1, kv_width, rng);   // a decode step
    std::vector<RowInfo> rows = {{0, 269}, {2, 10}, {0, 0}, {0, 128}, {2, 3}, {0, 127}};
    for (int p = 0; p < 40; ++p) rows.push_back({0, 200 + p});
    for (int n : {1, 6, int(rows.size())}) {
      INFO("kv ", type == KvType::f16 ? "f16" : "f32", " heads ", s.n_heads, "/", s.n_kv_heads, " hd ", s.head_dim,
           " n ", n);
      check_attention(*cpu, *vk, cc, cg, 1, rows, n, s, rng);
    }
    const RowInfo unstored{1, 0};
    auto q = vk->alloc(size_t(width)), o = vk->alloc(size_t(width));
    CHECK_THROWS_WITH_AS(vk->attention(*q, cg, 1, 1, &unstored, {s.n_heads, s.n_kv_heads, s.head_dim}, *o),
                         doctest::Contains("not stored yet"), KernelError);
    CHECK_THROWS_WITH_AS(vk->attention(*q, cg, 0, 1, &rows[0], {s.n_heads, s.n_kv_heads, s.head_dim}, *o),
                         doctest::Contains("not stored yet"), KernelError);
  });
  KvCacheDesc big;
  big.n_layers = 1;
  big.n_ctx = 4;
  big.n_kv_heads = 1;
  big.head_dim = 258;
  CHECK_THROWS_WITH_AS(vk->create_kv_cache(big), doctest::Contains("up to 256"), KernelError);
  check_clean(*vk);
}

// Prefill batches (n > 8 rows of one slot, head_dim 64 and 128) take attention_prefill.comp: 32
// query rows per workgroup, so 9 rows (one partial workgroup), 33 (a full one and one row) and
// 70 consecutive positions; rows out of order, a row at position 0 next to rows that see 70
// positions, and grouped-query heads. The rows of several slots in the first test take
// attention.comp.
TEST_CASE("vulkan: prefill attention, 32 query rows per workgroup, matches the CPU (1e-5)") {
  auto cpu = make_cpu_backend(2);
  auto vk = make_vk();
  std::mt19937_64 rng(11);
  for_each_cache(*cpu, *vk, {{8, 2, 64}, {6, 3, 128}, {4, 4, 128}}, 2, 2, 100,
                 [&](KvType type, const AttnShape& s, KvCache& cc, KvCache& cg) {
    const int kv_width = s.n_kv_heads * s.head_dim;
    store(*cpu, *vk, cc, cg, 1, 1, 0, 70, kv_width, rng);
    std::vector<RowInfo> in_order, shuffled;
    for (int p = 0; p < 70; ++p) in_order.push_back({1, p});
    for (int i = 0; i < 33; ++i) shuffled.push_back({1, (i * 37 + 5) % 70});
    shuffled[3].pos = 0;
    for (int n : {9, 33, 70}) {
      INFO("kv ", type == KvType::f16 ? "f16" : "f32", " heads ", s.n_heads, "/", s.n_kv_heads, " hd ", s.head_dim,
           " n ", n);
      check_attention(*cpu, *vk, cc, cg, 1, in_order, n, s, rng);
      if (n <= 33) check_attention(*cpu, *vk, cc, cg, 1, shuffled, n, s, rng);
    }
  });
  check_clean(*vk);
}

// Decode attention with the positions split across workgroups: by default (0) ceil(n_ctx / 64)
// in the grid (5 for these caches of 300), of which a row uses as many as its positions fill at
// 64 each (1 to 5 here); SBITS_VULKAN_ATTN_SPLITS forces a count, used up to one position each:
// splits longer and shorter than a 128-position block, and more splits in the grid than a row
// has positions. Every call reuses the per-(row, head) counters, which the merging workgroup resets.
TEST_CASE("vulkan: attention split across workgroups matches the CPU (1e-5)") {
  auto cpu = make_cpu_backend(2);
  std::mt19937_64 rng(9);
  for (const char* splits : {"0", "2", "5", "64"}) {
    ScopedEnv env("SBITS_VULKAN_ATTN_SPLITS", splits);
    auto vk = make_vk();
    for_each_cache(*cpu, *vk, {{4, 4, 8}, {8, 2, 64}, {2, 1, 256}}, 1, 2, 300,
                   [&](KvType type, const AttnShape& s, KvCache& cc, KvCache& cg) {
      const int kv_width = s.n_kv_heads * s.head_dim;
      store(*cpu, *vk, cc, cg, 0, 0, 0, 290, kv_width, rng);
      store(*cpu, *vk, cc, cg, 0, 1, 0, 3, kv_width, rng);
      const std::vector<RowInfo> rows = {{0, 289}, {1, 2}, {0, 0}, {0, 130}, {1, 0}, {0, 40}};
      for (int n : {1, 6}) {
        INFO("splits ", splits, " kv ", type == KvType::f16 ? "f16" : "f32", " hd ", s.head_dim, " n ", n);
        check_attention(*cpu, *vk, cc, cg, 0, rows, n, s, rng);
      }
    });
    check_clean(*vk);
  }
}

// rope_and_store: Vulkan's one dispatch against the CPU's three ops (the interface's default),
// on q, k and the cache (read back through attention), f16 and f32 caches, both rope styles,
// grouped-query heads up to 256 wide; then with q and k the same buffer, which the backend
// hands to the three ops in order (the fused kernel reads each head once).
TEST_CASE("vulkan: rope_and_store equals rope, rope and kv_store, also with aliased buffers") {
  std::mt19937_64 rng(5);
  auto cpu = make_cpu_backend(2);
  auto vk = make_vk();
  const std::vector<RowInfo> rows = {{0, 0}, {0, 1}, {1, 0}, {0, 2}, {1, 7}};
  const int n = int(rows.size());
  const AttnShape shapes[] = {{6, 2, 16}, {4, 4, 256}, {2, 1, 2}};
  for (KvType type : {KvType::f16, KvType::f32}) {
    for (const AttnShape& s : shapes) {
      const KvCacheDesc d = cache_desc(2, 2, 16, s, type);
      const AttentionShape shape{s.n_heads, s.n_kv_heads, s.head_dim};
      const int qw = s.n_heads * s.head_dim, kw = s.n_kv_heads * s.head_dim;
      const std::vector<float> q0 = random_floats(rng, size_t(n * qw)), k0 = random_floats(rng, size_t(n * kw)),
                               v0 = random_floats(rng, size_t(n * kw));
      for (const RopeStyle style : {RopeStyle::neox, RopeStyle::interleaved}) {
        std::vector<std::vector<float>> results[2];
        int i = 0;
        for (Backend* be : {cpu.get(), vk.get()}) {
          auto cache = be->create_kv_cache(d);
          auto q = make_buffer(*be, q0), k = make_buffer(*be, k0), v = make_buffer(*be, v0);
          auto out = be->alloc(size_t(n * qw));
          be->rope_and_store(*q, *k, *v, *cache, 1, n, rows.data(), shape, 10000.0f, style);
          be->attention(*q, *cache, 1, n, rows.data(), shape, *out);
          results[i++] = {read_all(*be, *q), read_all(*be, *k), read_all(*be, *out)};
        }
        INFO("kv ", type == KvType::f16 ? "f16" : "f32", " heads ", s.n_heads, "/", s.n_kv_heads, " hd ",
             s.head_dim, " neox ", style == RopeStyle::neox);
        for (int j = 0; j < 2; ++j) CHECK(scaled_diff(results[1][size_t(j)], results[0][size_t(j)]) <= 1e-6);
        CHECK(scaled_diff(results[1][2], results[0][2]) <= 1e-5);
      }
    }
  }
  // q and k aliased (one head each way): rotated twice, as by two rope calls.
  const KvCacheDesc d = cache_desc(1, 2, 16, AttnShape{2, 2, 16}, KvType::f16);
  const AttentionShape one{2, 2, 16};
  const std::vector<float> x0 = random_floats(rng, size_t(n * 32)), v0 = random_floats(rng, size_t(n * 32));
  std::vector<float> got[2];
  int i = 0;
  for (Backend* be : {cpu.get(), vk.get()}) {
    auto cache = be->create_kv_cache(d);
    auto x = make_buffer(*be, x0), v = make_buffer(*be, v0);
    be->rope_and_store(*x, *x, *v, *cache, 0, n, rows.data(), one, 10000.0f, RopeStyle::neox);
    got[i++] = read_all(*be, *x);
  }
  CHECK(scaled_diff(got[1], got[0]) <= 1e-6);
  check_clean(*vk);
}

}  // namespace sbits::kernels::test
