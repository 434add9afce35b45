// kv_store + attention against a float64 reference: f16 and f32 caches, grouped-query shapes,
// causal prefill (rows of one slot stored, then attended), batched decode over several slots in
// one call, large scores, and a context long enough that scores could not live on the stack.
#include <doctest/doctest.h>

#include <cfloat>

#include "tests/kernels/cpu_test_util.h"

namespace sbits::kernels::test {
namespace {

// f32 accumulation of up to a few thousand softmax-weighted values (all weights positive):
// random-walk rounding ~sqrt(n) ulps, 1e-5 of max|v| covers n = 4096 with margin.
constexpr double kAttentionTol = 1e-5;
// A score s = scale * q.k is computed in f32 with an error up to ~sqrt(hd) ulps of
// scale * sum |q_d k_d|; exp turns that into the same relative error of the weight, which moves
// the output by up to twice that times max|v|. 4x margin on that bound.
constexpr double kScoreErrPerSqrtHd = 8 * FLT_EPSILON;

struct Fixture {
  std::unique_ptr<Backend> be;
  std::unique_ptr<KvCache> cache;
  KvCacheDesc d;
  std::vector<double> k, v;  // what the cache should hold, same layout as the CPU cache

  Fixture(CpuIsa isa, int threads, const KvCacheDesc& desc) : be(make_backend(isa, threads)), d(desc) {
    cache = be->create_kv_cache(d);
    const size_t n = size_t(d.n_layers) * d.n_slots * d.n_kv_heads * d.n_ctx * d.head_dim;
    k.assign(n, 0.0), v.assign(n, 0.0);
  }
  size_t at(int layer, int slot, int h, int pos) const {
    return ((size_t(layer * d.n_slots + slot) * d.n_kv_heads + h) * d.n_ctx + pos) * d.head_dim;
  }
  double stored(float f) const { return d.type == KvType::f16 ? ref_f16_to_double(ref_f32_to_f16(f)) : f; }

  void store(int layer, const std::vector<RowInfo>& rows, std::mt19937_64& rng, float scale = 1.0f) {
    const int n = int(rows.size()), width = d.n_kv_heads * d.head_dim;
    const std::vector<float> kf = random_floats(rng, size_t(n * width), -scale, scale);
    const std::vector<float> vf = random_floats(rng, size_t(n * width));
    auto kb = make_buffer(*be, kf), vb = make_buffer(*be, vf);
    be->kv_store(*cache, layer, *kb, *vb, n, rows.data());
    for (int r = 0; r < n; ++r)
      for (int h = 0; h < d.n_kv_heads; ++h)
        for (int i = 0; i < d.head_dim; ++i) {
          const size_t src = size_t(r * width + h * d.head_dim + i);
          k[at(layer, rows[size_t(r)].slot, h, rows[size_t(r)].pos) + i] = stored(kf[src]);
          v[at(layer, rows[size_t(r)].slot, h, rows[size_t(r)].pos) + i] = stored(vf[src]);
        }
  }

  // Attends and returns the number of outputs outside the tolerance.
  int attend(int layer, const std::vector<RowInfo>& rows, int n_heads, std::mt19937_64& rng, float q_scale = 1.0f,
             bool in_place = false) {
    const int n = int(rows.size()), hd = d.head_dim, width = n_heads * hd;
    const std::vector<float> q = random_floats(rng, size_t(n * width), -q_scale, q_scale);
    auto qb = make_buffer(*be, q);
    auto ob = in_place ? nullptr : be->alloc(q.size());
    Buffer& out = in_place ? *qb : *ob;
    be->attention(*qb, *cache, layer, n, rows.data(), AttentionShape{n_heads, d.n_kv_heads, hd}, out);
    const std::vector<float> got = read_all(*be, out);
    int bad = 0;
    for (int r = 0; r < n; ++r)
      for (int h = 0; h < n_heads; ++h) bad += check_head(layer, rows[size_t(r)], h, n_heads, &q[size_t(r * width + h * hd)],
                                                          &got[size_t(r * width + h * hd)]);
    return bad;
  }

  int check_head(int layer, RowInfo row, int h, int n_heads, const float* q, const float* got) const {
    const int hd = d.head_dim, kvh = h / (n_heads / d.n_kv_heads), np = row.pos + 1;
    const double scale = 1.0 / std::sqrt(double(hd));
    std::vector<double> s(static_cast<size_t>(np));
    double m = -INFINITY, mag = 0, vmax = 0;
    for (int p = 0; p < np; ++p) {
      const double* kp = &k[at(layer, row.slot, kvh, p)];
      double dot = 0, dm = 0;
      for (int i = 0; i < hd; ++i) dot += q[i] * kp[i], dm += std::fabs(q[i] * kp[i]);
      s[size_t(p)] = dot * scale;
      m = std::max(m, s[size_t(p)]);
      mag = std::max(mag, dm * scale);
    }
    std::vector<double> out(size_t(hd), 0.0);
    double l = 0;
    for (int p = 0; p < np; ++p) {
      const double w = std::exp(s[size_t(p)] - m);
      l += w;
      const double* vp = &v[at(layer, row.slot, kvh, p)];
      for (int i = 0; i < hd; ++i) out[size_t(i)] += w * vp[i], vmax = std::max(vmax, std::fabs(vp[i]));
    }
    const double tol = vmax * (kAttentionTol + kScoreErrPerSqrtHd * std::sqrt(double(hd)) * mag);
    int bad = 0;
    for (int i = 0; i < hd; ++i) {
      const double ref = out[size_t(i)] / l;
      if (!(std::fabs(double(got[i]) - ref) <= tol) && ++bad <= 2)
        FAIL_CHECK("slot " << row.slot << " pos " << row.pos << " head " << h << " dim " << i << ": got " << got[i]
                           << ", want " << ref);
    }
    return bad;
  }
};

std::vector<RowInfo> prefill_rows(int slot, int begin, int end) {
  std::vector<RowInfo> rows;
  for (int p = begin; p < end; ++p) rows.push_back(RowInfo{slot, p});
  return rows;
}

struct Shape {
  int n_heads, n_kv_heads, head_dim;
};

TEST_CASE("cpu attention: GQA shapes, f16 and f32 caches, prefill then batched decode over slots") {
  const Shape shapes[] = {{4, 4, 8}, {6, 2, 20}, {8, 1, 64}, {4, 2, 7}, {2, 1, 128}};
  for (CpuIsa isa : test_isas()) {
    for (KvType type : {KvType::f16, KvType::f32}) {
      for (const Shape& sh : shapes) {
        CAPTURE(cpu_isa_name(isa));
        CAPTURE(int(type));
        CAPTURE(sh.head_dim);
        Fixture f(isa, 3, KvCacheDesc{2, 3, 150, sh.n_kv_heads, sh.head_dim, type});
        std::mt19937_64 rng{uint64_t(sh.head_dim * 10 + sh.n_heads)};
        // Causal prefill of one prompt in slot 1 (layer 1): stored first, then attended.
        const auto p1 = prefill_rows(1, 0, 37);
        f.store(1, p1, rng);
        CHECK(f.attend(1, p1, sh.n_heads, rng) == 0);
        // A prompt filling the whole context of slot 0 (several 64-position blocks), and a
        // short one in slot 2, layer 1.
        const auto p0 = prefill_rows(0, 0, 150);
        f.store(1, p0, rng);
        CHECK(f.attend(1, p0, sh.n_heads, rng, 1.0f, true) == 0);  // out aliases q
        f.store(1, prefill_rows(2, 0, 10), rng);
        // Batched decode: one new token per slot, at different positions, in one call.
        const std::vector<RowInfo> step = {{1, 37}, {2, 10}, {0, 100}};
        f.store(1, step, rng);
        CHECK(f.attend(1, step, sh.n_heads, rng) == 0);
        // Layer 0 is separate storage: a prompt there does not disturb layer 1.
        f.store(0, prefill_rows(1, 0, 5), rng);
        CHECK(f.attend(0, prefill_rows(1, 0, 5), sh.n_heads, rng) == 0);
        CHECK(f.attend(1, step, sh.n_heads, rng) == 0);
      }
    }
  }
}

TEST_CASE("cpu attention: large scores stay finite and accurate (stable softmax)") {
  for (CpuIsa isa : test_isas()) {
    Fixture f(isa, 2, KvCacheDesc{1, 1, 100, 2, 32, KvType::f32});
    std::mt19937_64 rng(5);
    const auto rows = prefill_rows(0, 0, 100);
    f.store(0, rows, rng, 30.0f);
    CHECK(f.attend(0, rows, 4, rng, 30.0f) == 0);  // scores up to ~5000
  }
}

TEST_CASE("cpu attention: a long context (4100 positions)") {
  for (CpuIsa isa : test_isas()) {
    Fixture f(isa, 2, KvCacheDesc{1, 2, 4100, 2, 64, KvType::f16});
    std::mt19937_64 rng(6);
    f.store(0, prefill_rows(1, 0, 4100), rng);
    CHECK(f.attend(0, {{1, 4099}, {1, 2000}, {1, 63}, {1, 64}}, 4, rng) == 0);
  }
}

}  // namespace
}  // namespace sbits::kernels::test
