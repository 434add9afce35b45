// The CUDA backend's deferred ops (kernels/cuda/cuda_fuse.cpp): matmuls that read the same x
// grouped into one launch, rmsnorm and swiglu fused with the next matmul's x conversion. The
// same sequences of ops run on the CPU backend, the CUDA backend with fusion (default) and
// without it (SBITS_CUDA_FUSE=0); every buffer is compared after the sequence, and after
// replays of it (the op queue captures a repeated sequence into a CUDA graph).
//
// Tolerance: relative to the largest |value| of each compared buffer: x is rounded to
// f16 before the tensor-core matvec (2^-11 relative), in chains of up to three matmuls: 1e-2.
#include <doctest/doctest.h>

#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/tiled/tiled_test_util.h"

namespace sbits::kernels::test {
namespace {

// Each tile's bitwidth drawn from every code bitwidth and, with f16_tiles, 16 (tiles kept in f16).
std::vector<uint8_t> mixed_table(int64_t tiles, uint32_t seed, bool f16_tiles) {
  const uint8_t bits[] = {2, 3, 4, 5, 6, 8, 16};
  const uint32_t kinds = f16_tiles ? 7 : 6;
  std::vector<uint8_t> t(static_cast<size_t>(tiles));
  std::mt19937 rng(seed);
  for (auto& b : t) b = bits[rng() % kinds];
  return t;
}

RandomTiled tiled(int64_t rows, int64_t cols, uint32_t seed, bool f16_tiles = true) {
  const int64_t tiles = ((rows + 63) / 64) * ((cols + 127) / 128);
  return make_random_tiled(rows, cols, 64, 128, 128, mixed_table(tiles, seed, f16_tiles), seed);
}

std::unique_ptr<Weight> upload(Backend& be, const RandomTiled& t) {
  HostWeight hw;
  hw.type = WeightType::tiled;
  hw.rows = t.desc.rows;
  hw.cols = t.desc.cols;
  hw.data = t.data;
  hw.bytes = t.bytes;
  hw.tiled = &t.desc;
  return be.upload(hw);
}

// A layer-like sequence: d (model width) and f (hidden width) as in q/k/v and gate/up/down.
struct Model {
  RandomTiled wq, wk, wv, gate, up, down, extra;
  std::vector<float> norm;
  Model(int64_t d, int64_t f)
      : wq(tiled(d, d, 1)), wk(tiled(d, d, 2)), wv(tiled(d / 2 + 8, d, 3)), gate(tiled(f, d, 4)), up(tiled(f, d, 5)),
        down(tiled(d, f, 6)), extra(tiled(f, d, 7)), norm(size_t(d)) {
    // Small norm weights: the random tiles' values reach 25 (rms ~4), so with norm ~1 gate and
    // up reach ~100 each and swiglu's output exceeds f16's 65504, where the conversion of x
    // saturates (elementwise.cu; fused or not, the first device run of this test failed there
    // alone, identically in both paths). Real activations stay far below.
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(0.01f, 0.03f);
    for (float& v : norm) v = u(rng);
  }
};

struct Run {
  std::vector<std::vector<float>> buffers;  // every buffer after the sequence
};

// Runs the sequence `reps` times on be (fresh x each time) and returns the buffers of each rep.
std::vector<Run> run_sequence(Backend& be, const Model& m, int n, int reps) {
  const int64_t d = m.wq.desc.rows, f = m.gate.desc.rows, dv = m.wv.desc.rows;
  auto wq = upload(be, m.wq), wk = upload(be, m.wk), wv = upload(be, m.wv), wg = upload(be, m.gate),
       wu = upload(be, m.up), wd = upload(be, m.down), we = upload(be, m.extra);
  HostWeight nh;
  nh.type = WeightType::f32;
  nh.rows = 1;
  nh.cols = d;
  nh.data = m.norm.data();
  nh.bytes = m.norm.size() * 4;
  auto wn = be.upload(nh);
  auto x = be.alloc(size_t(n * d)), h = be.alloc(size_t(n * d)), q = be.alloc(size_t(n * d)),
       k = be.alloc(size_t(n * d)), v = be.alloc(size_t(n * dv)), g = be.alloc(size_t(n * f)),
       u = be.alloc(size_t(n * f)), e = be.alloc(size_t(n * f)), s = be.alloc(size_t(n * f));
  std::vector<Run> runs;
  for (int r = 0; r < reps; ++r) {
    std::mt19937 rng(uint32_t(100 + r));
    std::normal_distribution<float> nd;
    std::vector<float> xv(size_t(n * d));
    for (float& t : xv) t = nd(rng);
    be.write(*x, xv.data(), xv.size());
    be.rmsnorm(*x, *wn, 1e-5f, n, *h);       // fused with the conversion of h
    be.matmul(*wq, *h, n, *q, false);        // q, k, v: one grouped launch
    be.matmul(*wk, *h, n, *k, false);
    be.matmul(*wv, *h, n, *v, true);         // a member that accumulates
    be.add(*q, *k, size_t(n * d));           // reads pending outputs: flushes
    be.rmsnorm(*q, *wn, 1e-5f, n, *h);
    be.matmul(*wg, *h, n, *g, false);        // gate, up
    be.matmul(*wu, *h, n, *u, false);
    be.matmul(*we, *h, n, *e, false);        // a third member
    be.swiglu(*g, *u, size_t(n * f), *g);    // fused with the conversion for down
    be.matmul(*wd, *g, n, *x, true);
    be.matmul(*wg, *h, n, *s, false);        // same y twice: two launches, in order
    be.matmul(*wu, *h, n, *s, true);
    be.matmul(*wd, *s, n, *k, false);        // reads the pending s: a new group after a flush
    be.swiglu(*e, *u, size_t(n * f), *e);    // consumed by nothing: recorded as itself
    be.rmsnorm(*x, *wn, 1e-5f, n, *x);       // out aliases x, then a matmul of another x
    be.matmul(*wq, *h, n, *q, false);
    be.rmsnorm(*q, *wn, 1e-5f, n, *q);       // out aliases x, and the matmul reads it: fused
    be.matmul(*wk, *q, n, *k, false);
    Run run;
    for (Buffer* b : {x.get(), h.get(), q.get(), k.get(), v.get(), g.get(), u.get(), e.get(), s.get()})
      run.buffers.push_back(read_all(be, *b));
    runs.push_back(std::move(run));
  }
  return runs;
}

double worst_vs_max(const std::vector<float>& a, const std::vector<float>& b) {
  double mx = 0;
  for (float t : b) mx = std::max(mx, double(std::fabs(t)));
  return max_abs_diff(a, b) / (mx + 1e-30);
}

}  // namespace

TEST_CASE("cuda fused decode ops: grouped matmuls and fused conversions match the CPU and the unfused path") {
  struct Dims {
    int64_t d, f;
  };
  // Edge strips and edge tile columns; then sizes where the group's split-K differs from the
  // members' own.
  // d >= 2048: variant 6 reads the d-column x's (the one-row rmsnorm_convert without sums).
  for (const Dims dims : {Dims{200, 300}, Dims{512, 1408}, Dims{1024, 2752}, Dims{2176, 1408}}) {
    const Model m(dims.d, dims.f);
    for (int n : {1, 3, 8}) {
      INFO("d ", dims.d, " f ", dims.f, " n ", n);
      auto cpu = make_backend(CpuIsa::scalar, 1);
      const std::vector<Run> ref = run_sequence(*cpu, m, n, 3);
      std::vector<Run> plain;
      {
        ScopedEnv env("SBITS_CUDA_FUSE", "0");
        auto gpu = make_cuda();
        plain = run_sequence(*gpu, m, n, 3);
      }
      auto gpu = make_cuda();
      const std::vector<Run> fused = run_sequence(*gpu, m, n, 3);
      for (size_t r = 0; r < ref.size(); ++r) {
        for (size_t b = 0; b < ref[r].buffers.size(); ++b) {
          INFO("rep ", r, " buffer ", b);
          CHECK(worst_vs_max(fused[r].buffers[b], ref[r].buffers[b]) <= 1e-2);
          CHECK(worst_vs_max(plain[r].buffers[b], ref[r].buffers[b]) <= 1e-2);
        }
      }
      // Graph replays give the first run's results for the same inputs.
      const std::vector<Run> again = run_sequence(*gpu, m, n, 3);
      for (size_t r = 0; r < ref.size(); ++r)
        for (size_t b = 0; b < ref[r].buffers.size(); ++b) CHECK(again[r].buffers[b] == fused[r].buffers[b]);
    }
  }
}

TEST_CASE("cuda fused decode ops: destroying a buffer a pending op uses runs the op first") {
  const Model m(200, 300);
  auto gpu = make_cuda();
  auto cpu = make_backend(CpuIsa::scalar, 1);
  std::vector<std::vector<float>> got;
  for (Backend* be : {cpu.get(), gpu.get()}) {
    auto w = upload(*be, m.wq);
    auto x = be->alloc(200), y = be->alloc(200);
    std::vector<float> xv(200);
    for (size_t i = 0; i < xv.size(); ++i) xv[i] = float(i % 7) - 3.0f;
    be->write(*x, xv.data(), xv.size());
    be->matmul(*w, *x, 1, *y, false);
    x.reset();  // the pending matmul must have read x before its memory goes
    got.push_back(read_all(*be, *y));
  }
  CHECK(worst_vs_max(got[1], got[0]) <= 1e-2);
}


namespace {

struct AttnOut {
  std::vector<float> out, y, out2, y2;
};

// One decode row's attention over `len` cached positions of a 4096-position cache, then wo
// (tiled, width x width) on its output, then the same for a second query at position len - 2:
// the conversion wo reads must follow the second attention's output.
AttnOut attention_then_wo(Backend& be, const RandomTiled& wo, int heads, int hd, int len) {
  const int width = heads * hd, kv_heads = heads / 2;
  const KvCacheDesc d{.n_layers = 1, .n_slots = 1, .n_ctx = 4096, .n_kv_heads = kv_heads, .head_dim = hd,
                      .type = KvType::f16};
  auto cache = be.create_kv_cache(d);
  std::mt19937_64 rng(uint64_t(len) * 7 + uint64_t(hd));
  std::vector<RowInfo> stored;
  for (int p = 0; p < len; ++p) stored.push_back({0, p});
  auto k = make_buffer(be, random_floats(rng, size_t(len) * kv_heads * hd)),
       v = make_buffer(be, random_floats(rng, size_t(len) * kv_heads * hd));
  be.kv_store(*cache, 0, *k, *v, len, stored.data());
  auto w = upload(be, wo);
  auto q = make_buffer(be, random_floats(rng, size_t(width), -2.0f, 2.0f)),
       q2 = make_buffer(be, random_floats(rng, size_t(width), -2.0f, 2.0f));
  auto o = be.alloc(size_t(width)), y = be.alloc(size_t(width));
  const AttentionShape shape{heads, kv_heads, hd};
  AttnOut r;
  const RowInfo row{0, len - 1}, row2{0, len - 2};
  be.attention(*q, *cache, 0, 1, &row, shape, *o);
  be.matmul(*w, *o, 1, *y, false);
  r.out = read_all(be, *o);
  r.y = read_all(be, *y);
  be.attention(*q2, *cache, 0, 1, &row2, shape, *o);
  be.matmul(*w, *o, 1, *y, false);
  r.out2 = read_all(be, *o);
  r.y2 = read_all(be, *y);
  return r;
}

}  // namespace

// Decode attention whose output a variant-6 matvec reads next (wo, >= 2048 columns): the
// attention kernel makes that x's f16 copy and digits itself (cuda_ops.cpp attention), with
// convert_x's arithmetic, so wo's result equals the unfused path's exactly. One split (short
// context) and merged splits; head_dim 128 (lanes over dimensions) and 64.
TEST_CASE("cuda fused decode ops: one-row attention converts wo's x as convert_x would") {
  struct Case {
    int heads, hd, len;
  };
  for (const Case c : {Case{16, 128, 6}, Case{16, 128, 900}, Case{32, 64, 300}}) {
    INFO("heads ", c.heads, " head_dim ", c.hd, " positions ", c.len);
    const RandomTiled wo = tiled(c.heads * c.hd, c.heads * c.hd, 21);
    auto cpu = make_backend(CpuIsa::scalar, 1);
    const AttnOut ref = attention_then_wo(*cpu, wo, c.heads, c.hd, c.len);
    AttnOut plain;
    {
      ScopedEnv env("SBITS_CUDA_FUSE", "0");
      auto gpu = make_cuda();
      plain = attention_then_wo(*gpu, wo, c.heads, c.hd, c.len);
    }
    auto gpu = make_cuda();
    const AttnOut fused = attention_then_wo(*gpu, wo, c.heads, c.hd, c.len);
    CHECK(worst_vs_max(fused.y, ref.y) <= 1e-2);
    CHECK(worst_vs_max(fused.y2, ref.y2) <= 1e-2);
    CHECK(worst_vs_max(fused.out2, ref.out2) <= 1e-4);
    CHECK(fused.out == plain.out);
    CHECK(fused.y == plain.y);
    CHECK(fused.out2 == plain.out2);
    CHECK(fused.y2 == plain.y2);
  }
}

}  // namespace sbits::kernels::test

namespace sbits::kernels::test {
namespace {

// Tiles of every code bitwidth but no f16 ones: f16 tiles read x's f16 copy, which the folds do
// not make, so their matvecs are not folded.
RandomTiled tiled_codes(int64_t rows, int64_t cols, uint32_t seed) { return tiled(rows, cols, seed, false); }

struct FoldRun {
  std::vector<std::vector<float>> buffers;
  std::vector<float> x_at_fold, h_at_fold;  // x and h after the third norm fold's consumer
  uint64_t norm_folds = 0, swiglu_folds = 0;  // CudaStats (0 on the CPU)
};

struct FoldWeights {
  RandomTiled q, k, o, gate, up, down, f16, down_f16;
  explicit FoldWeights(int64_t d, int64_t f)
      : q(tiled_codes(d, d, 31)), k(tiled_codes(d / 2, d, 32)), o(tiled_codes(d, d, 33)), gate(tiled_codes(f, d, 34)),
        up(tiled_codes(f, d, 35)), down(tiled_codes(d, f, 36)), f16(tiled(f, d, 37)), down_f16(tiled(d, f, 38)) {}
};

// Decode-shaped (n = 1, widths >= 2048: variant 6) sequences around the folds: three rmsnorm
// folds (down into q / k, wo into gate / up, down into q) and a swiglu fold (gate / up into down),
// then ops that must not fold: consumers with f16 tiles, outputs read or added to first, an
// rmsnorm with nothing after it. Magnitudes stay where f16 conversions of x do not saturate.
FoldRun fold_sequence(Backend& be, const FoldWeights& fw, const std::vector<float>& norm, uint32_t seed) {
  const int64_t d = fw.q.desc.rows, f = fw.gate.desc.rows;
  auto wq = upload(be, fw.q), wk = upload(be, fw.k), wo = upload(be, fw.o), wg = upload(be, fw.gate),
       wu = upload(be, fw.up), wd = upload(be, fw.down), wm = upload(be, fw.f16), wd16 = upload(be, fw.down_f16);
  HostWeight nh;
  nh.type = WeightType::f32;
  nh.rows = 1;
  nh.cols = d;
  nh.data = norm.data();
  nh.bytes = norm.size() * 4;
  auto wn = be.upload(nh);
  std::mt19937_64 rng(seed);
  auto x = make_buffer(be, random_floats(rng, size_t(d), -2.0f, 2.0f)),
       sa = make_buffer(be, random_floats(rng, size_t(f), -0.4f, 0.4f)),
       sb = make_buffer(be, random_floats(rng, size_t(f), -0.4f, 0.4f));
  auto s = be.alloc(size_t(f)), h = be.alloc(size_t(d)), q = be.alloc(size_t(d)), k = be.alloc(size_t(d / 2)),
       g = be.alloc(size_t(f)), u = be.alloc(size_t(f)), m = be.alloc(size_t(f)), h2 = be.alloc(size_t(d));
  const bool cuda = be.name() == "cuda";
  const CudaStats st0 = cuda ? cuda_stats(be) : CudaStats{};
  FoldRun r;
  be.swiglu(*sa, *sb, size_t(f), *s);  // fused with the conversion of down's x
  be.matmul(*wd, *s, 1, *x, true);     // producer: down into the residual
  be.rmsnorm(*x, *wn, 1e-5f, 1, *h);
  be.matmul(*wq, *h, 1, *q, false);  // consumers
  be.matmul(*wk, *h, 1, *k, false);
  be.matmul(*wo, *q, 1, *x, true);  // producer: wo
  be.rmsnorm(*x, *wn, 1e-5f, 1, *h);
  be.matmul(*wg, *h, 1, *g, false);
  be.matmul(*wu, *h, 1, *u, false);
  be.swiglu(*g, *u, size_t(f), *g);  // folded into gate / up
  be.matmul(*wd, *g, 1, *x, true);   // its consumer, and the next norm fold's producer
  be.rmsnorm(*x, *wn, 1e-5f, 1, *h);
  be.matmul(*wq, *h, 1, *q, false);
  r.h_at_fold = read_all(be, *h);  // scaled in place by the consumer
  r.x_at_fold = read_all(be, *x);
  be.matmul(*wo, *q, 1, *x, true);
  be.rmsnorm(*x, *wn, 1e-5f, 1, *h);
  be.matmul(*wm, *h, 1, *m, false);  // f16 tiles: no fold
  r.buffers.push_back(read_all(be, *m));
  be.matmul(*wg, *h, 1, *g, false);
  be.matmul(*wu, *h, 1, *u, false);
  be.swiglu(*g, *u, size_t(f), *u);  // output aliases up
  be.matmul(*wd16, *u, 1, *x, true);  // f16 tiles: no fold
  be.matmul(*wg, *h, 1, *g, false);
  be.matmul(*wu, *h, 1, *u, false);
  be.swiglu(*g, *u, size_t(f), *g);
  r.buffers.push_back(read_all(be, *g));  // read before any matmul: no fold
  be.matmul(*wo, *q, 1, *x, true);
  be.rmsnorm(*x, *wn, 1e-5f, 1, *h2);
  be.add(*h2, *q, size_t(d));  // reads the norm's output: no fold
  be.matmul(*wo, *h2, 1, *x, true);
  be.rmsnorm(*x, *wn, 1e-5f, 1, *h);  // nothing after it but the reads
  for (Buffer* b : {x.get(), h.get(), q.get(), k.get(), g.get(), u.get(), h2.get()})
    r.buffers.push_back(read_all(be, *b));
  if (cuda) {
    const CudaStats st = cuda_stats(be);
    r.norm_folds = st.norm_folds - st0.norm_folds;
    r.swiglu_folds = st.swiglu_folds - st0.swiglu_folds;
  }
  return r;
}

}  // namespace

// The RMSNorm and swiglu folds (cuda_fuse.cpp) against the CPU and against the unfolded path
// (SBITS_CUDA_NORM_FOLD=0, SBITS_CUDA_SWIGLU_FOLD=0). The norm fold's consumers' x differs from
// the unfolded path's by the f16 rounding of the normalized x that it skips (~2^-11 relative per
// element): 1e-2 of each buffer's largest value, as the other fused paths. The folded norm's
// output, as its consumer leaves it, against the norm of the x read back (f32 arithmetic in
// another order): 1e-5. The swiglu fold alone is exact (swiglu_convert's arithmetic).
TEST_CASE("cuda fused decode ops: the RMSNorm and swiglu folds match the CPU and the unfolded path") {
  struct Dims {
    int64_t d, f;
  };
  // Widths >= 2048: variant 6 on every matvec. 2176: 17 tile columns, split into chunks of
  // unequal tile counts.
  for (const Dims dims : {Dims{2048, 2816}, Dims{2176, 2304}}) {
    INFO("d ", dims.d, " f ", dims.f);
    const FoldWeights fw(dims.d, dims.f);
    std::vector<float> norm(size_t(dims.d));
    std::mt19937 rng(12);
    std::uniform_real_distribution<float> nd(0.02f, 0.06f);
    for (float& v : norm) v = nd(rng);
    auto cpu = make_backend(CpuIsa::scalar, 1);
    const FoldRun ref = fold_sequence(*cpu, fw, norm, 5);
    FoldRun plain, swiglu_only;
    {
      ScopedEnv env("SBITS_CUDA_NORM_FOLD", "0");
      {
        auto gpu = make_cuda();
        swiglu_only = fold_sequence(*gpu, fw, norm, 5);
      }
      ScopedEnv env2("SBITS_CUDA_SWIGLU_FOLD", "0");
      auto gpu = make_cuda();
      plain = fold_sequence(*gpu, fw, norm, 5);
    }
    auto gpu = make_cuda();
    const FoldRun folded = fold_sequence(*gpu, fw, norm, 5);
    CHECK(folded.norm_folds == 3);
    CHECK(folded.swiglu_folds == 1);
    CHECK(plain.norm_folds + plain.swiglu_folds == 0);
    CHECK(swiglu_only.swiglu_folds == 1);
    for (size_t b = 0; b < ref.buffers.size(); ++b) CHECK(swiglu_only.buffers[b] == plain.buffers[b]);
    for (size_t b = 0; b < ref.buffers.size(); ++b) {
      INFO("buffer ", b);
      CHECK(worst_vs_max(folded.buffers[b], ref.buffers[b]) <= 1e-2);
      CHECK(worst_vs_max(plain.buffers[b], ref.buffers[b]) <= 1e-2);
      CHECK(worst_vs_max(folded.buffers[b], plain.buffers[b]) <= 1e-2);
    }
    double ss = 0;
    for (float v : folded.x_at_fold) ss += double(v) * double(v);
    const float inv = float(1.0 / std::sqrt(ss / double(dims.d) + 1e-5));
    std::vector<float> h(norm.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = folded.x_at_fold[i] * inv * norm[i];
    CHECK(worst_vs_max(folded.h_at_fold, h) <= 1e-5);
    // Graph replays and a second sequence give the same bits.
    const FoldRun again = fold_sequence(*gpu, fw, norm, 5);
    for (size_t b = 0; b < ref.buffers.size(); ++b) CHECK(again.buffers[b] == folded.buffers[b]);
  }
}

}  // namespace sbits::kernels::test
