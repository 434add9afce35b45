// matmul of the Vulkan backend on dense (f32, f16, bf16) and tiled
// mixed-bitwidth weights against float64 dot products of the exact weight
// values, at awkward shapes, for n = 1..8 (the matvec kernels), 9, 40 and 130 (the
// prefill GEMM), with and without accumulation; the tiled matvec with the CPU
// drivers' 64 rows per workgroup and the GPUs' 8 (and others); tiled embed
// against the dense rows exactly.
//
// Tolerance: 1e-5 of sum |w x| (+ |y0|) per output: every f32 path multiplies
// exact f32 weights (dequantized with one FMA, as the reference) by f32 x and
// sums in f32, only in another order. The split matvec with integer dot products
// (matvec_dot.comp) reads x as int8 digits within max|x| / 32512 per 32 columns
// (xq.comp) and sums exactly: 1e-4 there (normal x: max|x| is ~3 times the mean |x|).
#include <doctest/doctest.h>

#include "tests/kernels/tiled/tiled_test_util.h"
#include "tests/vulkan/vulkan_test_util.h"

namespace sbits::kernels::test {
namespace {

const uint8_t kAllBits[] = {2, 3, 4, 5, 6, 8, 16};
const int kBatches[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 40, 130};  // 130: three row blocks of the GEMM
constexpr double kTol = 1e-5, kDotTol = 1e-4;
// Prefill of tiled weights on matrix units (matmul_coopmat.comp, where the device has
// VK_NV_cooperative_matrix and cols % 32 == 0) multiplies weights and x rounded to f16 (each
// within 2^-11 relative), summed in f32: 2e-3, as the CUDA backend's prefill.
constexpr double kCoopmatTol = 2e-3;

double tiled_tol(Backend &vk, int64_t cols, int n) {
  return n > 8 && cols % 32 == 0 && vulkan_stats(vk).cooperative_matrix ? kCoopmatTol : kTol;
}

std::vector<uint8_t> table_of(int64_t tiles, int which, uint32_t seed) {
  std::vector<uint8_t> t(static_cast<size_t>(tiles));
  std::mt19937 rng(seed);
  for (auto &b : t) b = which < 0 ? kAllBits[rng() % 7] : kAllBits[which];
  return t;
}

std::unique_ptr<Weight> upload(Backend &be, const RandomTiled &t) {
  HostWeight hw;
  hw.type = WeightType::tiled;
  hw.rows = t.desc.rows;
  hw.cols = t.desc.cols;
  hw.data = t.data;
  hw.bytes = t.bytes;
  hw.tiled = &t.desc;
  return be.upload(hw);
}

// The worst error of y = (y0 +) x W^T relative to sum |w x| (+ |y0|); `dense(o,
// i)` gives W.
template <class Dense>
double matmul_error(Backend &be, const Weight &w, int64_t rows, int64_t cols, Dense dense, int n, bool accumulate,
                    uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(n * cols)), y0(size_t(n * rows));
  for (float &v : x) v = nd(rng);
  for (float &v : y0) v = nd(rng);
  auto xb = be.alloc(x.size()), yb = be.alloc(y0.size());
  be.write(*xb, x.data(), x.size());
  be.write(*yb, y0.data(), y0.size());
  be.matmul(w, *xb, n, *yb, accumulate);
  const std::vector<float> y = read_all(be, *yb);
  double worst = 0;
  for (int j = 0; j < n; ++j) {
    for (int64_t o = 0; o < rows; ++o) {
      double ref = accumulate ? y0[size_t(j * rows + o)] : 0.0, mag = std::fabs(ref);
      for (int64_t i = 0; i < cols; ++i) {
        const double p = dense(o, i) * double(x[size_t(j * cols + i)]);
        ref += p;
        mag += std::fabs(p);
      }
      const double err = std::fabs(double(y[size_t(j * rows + o)]) - ref) / (mag + 1e-30);
      worst = std::isnan(err) ? INFINITY : std::max(worst, err);
    }
  }
  return worst;
}

struct Shape {
  int64_t rows, cols;
  int R, C, G;
};

}  // namespace

TEST_CASE("vulkan dense matmul: f32, f16, bf16 at awkward shapes, n = 1..9, 40, 130") {
  auto vk = make_vk();
  std::mt19937_64 rng(8);
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {7, 5}, {100, 64}, {300, 257}, {65, 1000}};
  for (WeightType t : kWeightTypes) {
    for (auto [rows, cols] : shapes) {
      TestWeight w = make_weight(t, rows, cols, rng, 2);
      auto wg = vk->upload(w.host);
      auto dense = [&](int64_t o, int64_t i) { return w.values[size_t(o * cols + i)]; };
      for (int n : kBatches) {
        INFO(weight_type_name(t), " ", rows, "x", cols, " n ", n);
        CHECK(matmul_error(*vk, *wg, rows, cols, dense, n, n % 2 == 1, uint32_t(n)) <= kTol);
      }
    }
  }
  check_clean(*vk);
}

TEST_CASE("vulkan tiled matmul: every bitwidth and mixed tiles, awkward shapes, n = 1..9, 40, 130") {
  const Shape shapes[] = {{172, 64, 64, 128, 128}, {64, 172, 64, 128, 128}, {200, 300, 64, 128, 128},
                          {1, 32, 64, 128, 128},   {100, 300, 64, 128, 32}, {130, 257, 16, 64, 32},
                          {33, 200, 20, 128, 128}, {150, 96, 100, 32, 32}};
  for (const char *rw : {"64", "8"}) {  // rows per workgroup: CPU drivers', GPUs'
    ScopedEnv env("SBITS_VULKAN_MATVEC_ROWS", rw);
    auto vk = make_vk();
    for (const Shape &s : shapes) {
      const int64_t tiles = ((s.rows + s.R - 1) / s.R) * ((s.cols + s.C - 1) / s.C);
      for (int which = -1; which < 7; ++which) {
        const RandomTiled t = make_random_tiled(s.rows, s.cols, s.R, s.C, s.G, table_of(tiles, which, 3), 17);
        auto w = upload(*vk, t);
        auto dense = [&](int64_t o, int64_t i) { return double(t.dense[size_t(o * s.cols + i)]); };
        for (int n : kBatches) {
          if (which >= 0 && n > 2 && n != 8 && n != 40) continue;  // single-bitwidth tables: fewer batches
          if (rw[0] == '8' && n != 1 && n != 3 && n != 8) continue;  // GPU shape: fewer pipelines to compile
          INFO("rows/wg ", rw, " shape ", s.rows, "x", s.cols, " R ", s.R, " C ", s.C, " G ", s.G, " bits ",
               which < 0 ? -1 : int(kAllBits[which]), " n ", n);
          CHECK(matmul_error(*vk, *w, s.rows, s.cols, dense, n, n % 2 == 0, uint32_t(n)) <= tiled_tol(*vk, s.cols, n));
        }
      }
    }
    check_clean(*vk);
  }
}

TEST_CASE("vulkan tiled matmul: every workgroup shape gives the same results, deterministically") {
  const RandomTiled t = make_random_tiled(200, 1100, 64, 128, 128, table_of(4 * 9, -1, 9), 31);
  auto dense = [&](int64_t o, int64_t i) { return double(t.dense[size_t(o * 1100 + i)]); };
  for (const char *rw : {"64", "32", "16", "8"}) {  // rows per workgroup: 8 groups split the columns 1..8 ways
    ScopedEnv env("SBITS_VULKAN_MATVEC_ROWS", rw);
    auto vk = make_vk();
    auto w = upload(*vk, t);
    for (int n : {1, 3, 8}) {
      INFO("rows/wg ", rw, " n ", n);
      CHECK(matmul_error(*vk, *w, 200, 1100, dense, n, true, 5) <= kTol);
    }
    std::mt19937_64 rng(12);
    const std::vector<float> x = random_floats(rng, 2 * 1100);
    auto xb = make_buffer(*vk, x), y1 = vk->alloc(2 * 200), y2 = vk->alloc(2 * 200);
    vk->matmul(*w, *xb, 2, *y1, false);
    vk->matmul(*w, *xb, 2, *y2, false);
    CHECK(read_all(*vk, *y1) == read_all(*vk, *y2));
    check_clean(*vk);
  }
}

// The split matvec (n = 1..8 on 64 x 128 tiles, group 128, whole tiles across), with f32
// arithmetic (matvec_tiled.comp) and integer dot products (matvec_dot.comp, where the device has
// them): every bitwidth and mixed tiles, short last strips, with the columns in one workgroup
// per strip and split across many (the last workgroup of a strip adds the partial sums),
// accumulating or not, repeated dispatches (the per-strip counters reset) and bit-identical
// results run to run.
TEST_CASE("vulkan split tiled matvec: every bitwidth, split-K, short strips, deterministic") {
  ScopedEnv split("SBITS_VULKAN_MATVEC_SPLIT", "1");
  const std::pair<int64_t, int64_t> shapes[] = {{64, 128}, {200, 1024}, {130, 8448}, {1, 256}};
  for (const char *dot : {"0", "1"}) {
    ScopedEnv dot_env("SBITS_VULKAN_INTEGER_DOT", dot);
    if (dot[0] == '1' && !vulkan_stats(*make_vk()).integer_dot) {
      MESSAGE("the device has no integer dot products: matvec_dot.comp not tested");
      continue;
    }
    const double tol = dot[0] == '1' ? kDotTol : kTol;
    for (const char *groups : {"1", "64", "100000"}) {  // one split per strip .. a chunk per tile
      ScopedEnv env("SBITS_VULKAN_MATVEC_GROUPS", groups);
      auto vk = make_vk();
      for (auto [rows, cols] : shapes) {
        const int64_t tiles = ((rows + 63) / 64) * (cols / 128);
        for (int which = -1; which < 7; ++which) {
          const RandomTiled t = make_random_tiled(rows, cols, 64, 128, 128, table_of(tiles, which, 5), 23);
          auto w = upload(*vk, t);
          auto dense = [&](int64_t o, int64_t i) { return double(t.dense[size_t(o * cols + i)]); };
          INFO("integer dot ", dot, " groups ", groups, " shape ", rows, "x", cols, " bits ",
               which < 0 ? -1 : int(kAllBits[which]));
          for (bool acc : {false, true}) CHECK(matmul_error(*vk, *w, rows, cols, dense, 1, acc, 7) <= tol);
          for (int n : {3, 8}) CHECK(matmul_error(*vk, *w, rows, cols, dense, n, n == 3, uint32_t(n)) <= tol);
          if (which >= 0) continue;
          std::mt19937_64 rng(3);
          const std::vector<float> x = random_floats(rng, size_t(cols));
          auto xb = make_buffer(*vk, x), y1 = vk->alloc(size_t(rows)), y2 = vk->alloc(size_t(rows));
          vk->matmul(*w, *xb, 1, *y1, false);
          vk->matmul(*w, *xb, 1, *y2, false);
          CHECK(read_all(*vk, *y1) == read_all(*vk, *y2));
        }
      }
      check_clean(*vk);
    }
  }
}

// matvec_dot.comp reads x's integer form, made once per x and reused while x is unchanged: a
// matvec after x was rewritten (by a write, or as the output of another op) must see the new x.
TEST_CASE("vulkan split tiled matvec: x's integer form follows every change of x") {
  ScopedEnv split("SBITS_VULKAN_MATVEC_SPLIT", "1");
  auto vk = make_vk();
  const int64_t rows = 130, cols = 1024;
  const RandomTiled t = make_random_tiled(rows, cols, 64, 128, 128, table_of(3 * 8, -1, 6), 29);
  auto w = upload(*vk, t);
  std::mt19937_64 rng(4);
  const std::vector<float> x1 = random_floats(rng, size_t(cols)), x2 = random_floats(rng, size_t(cols));
  auto expect = [&](const std::vector<float> &x) {
    auto xb = make_buffer(*vk, x), y = vk->alloc(size_t(rows));
    vk->matmul(*w, *xb, 1, *y, false);
    return read_all(*vk, *y);
  };
  const std::vector<float> y1 = expect(x1), y2 = expect(x2), ones(size_t(cols), 1.0f);
  auto xb = make_buffer(*vk, x1), y = vk->alloc(size_t(rows)), ob = make_buffer(*vk, ones);
  vk->matmul(*w, *xb, 1, *y, false);
  CHECK(read_all(*vk, *y) == y1);
  vk->write(*xb, x2.data(), x2.size());  // rewritten by the host
  vk->matmul(*w, *xb, 1, *y, false);
  CHECK(read_all(*vk, *y) == y2);
  vk->write(*xb, x1.data(), x1.size());
  vk->add(*xb, *ob, size_t(cols));  // x1 + 1, written by an op between two matvecs in one submission
  vk->matmul(*w, *xb, 1, *y, false);
  vk->write(*xb, x1.data(), x1.size());
  std::vector<float> x1p(x1);
  for (float &v : x1p) v += 1.0f;
  auto y3 = vk->alloc(size_t(rows));
  vk->matmul(*w, *xb, 1, *y3, false);
  CHECK(read_all(*vk, *y) == expect(x1p));
  CHECK(read_all(*vk, *y3) == y1);
  // Two rows after one: the digits made for row 0 do not cover row 1.
  std::vector<float> x12(x1);
  x12.insert(x12.end(), x2.begin(), x2.end());
  auto xb2 = make_buffer(*vk, x12), yb2 = vk->alloc(size_t(2 * rows));
  vk->matmul(*w, *xb2, 1, *yb2, false);
  vk->matmul(*w, *xb2, 2, *yb2, false);
  std::vector<float> y12(y1);
  y12.insert(y12.end(), y2.begin(), y2.end());
  CHECK(read_all(*vk, *yb2) == y12);
  check_clean(*vk);
}

// An rmsnorm, swiglu or attention whose output a split matvec with integer dot products has read
// before writes that output's digits in the same dispatch (xq.comp OP 1, 2; attention.comp, one
// split and two): the output must be the unfused op's (up to the order of rmsnorm's sum of
// squares), and the matvec after it must give exactly what it gives on the same x converted
// separately, with no conversion dispatch between the two.
TEST_CASE("vulkan rmsnorm, swiglu and attention write the digits of a matvec's x") {
  ScopedEnv split("SBITS_VULKAN_MATVEC_SPLIT", "1");
  for (const char *attn_splits : {"1", "2"}) {
    ScopedEnv env("SBITS_VULKAN_ATTN_SPLITS", attn_splits);
    auto vk = make_vk();
    if (!vulkan_stats(*vk).integer_dot) {
      MESSAGE("the device has no integer dot products: nothing fused to test");
      return;
    }
    auto ref = make_vk();  // unfused: its x never owns digits before the op
    const int64_t rows = 130, cols = 1024;  // attention: 8 heads of 128
    const RandomTiled t = make_random_tiled(rows, cols, 64, 128, 128, table_of(3 * 8, -1, 7), 31);
    auto w = upload(*vk, t), w_ref = upload(*ref, t);
    std::mt19937_64 rng(9);
    const TestWeight nw = make_weight(WeightType::bf16, 1, cols, rng);
    auto nwv = vk->upload(nw.host), nw_ref = ref->upload(nw.host);
    const std::vector<float> a = random_floats(rng, size_t(cols), -3, 3), b = random_floats(rng, size_t(cols), -3, 3);
    auto ab = make_buffer(*vk, a), bb = make_buffer(*vk, b), x = vk->alloc(size_t(cols)), y = vk->alloc(size_t(rows));
    auto a_ref = make_buffer(*ref, a), b_ref = make_buffer(*ref, b), x_ref = ref->alloc(size_t(cols));
    const KvCacheDesc kd{.n_layers = 1, .n_slots = 1, .n_ctx = 32, .n_kv_heads = 2, .head_dim = 128, .type = KvType::f16};
    auto cache = vk->create_kv_cache(kd), cache_ref = ref->create_kv_cache(kd);
    std::vector<RowInfo> positions;
    for (int i = 0; i < 20; ++i) positions.push_back({0, i});
    const std::vector<float> k = random_floats(rng, 20 * 256), v = random_floats(rng, 20 * 256);
    vk->kv_store(*cache, 0, *make_buffer(*vk, k), *make_buffer(*vk, v), 20, positions.data());
    ref->kv_store(*cache_ref, 0, *make_buffer(*ref, k), *make_buffer(*ref, v), 20, positions.data());
    const AttentionShape shape{8, 2, 128};
    auto scratch = vk->alloc(size_t(cols));
    vk->attention(*ab, *cache, 0, 1, &positions[19], shape, *scratch);  // its counters made (a fill op)
    vk->matmul(*w, *x, 1, *y, false);  // x now owns digits
    for (int op = 0; op < 3; ++op) {
      INFO("attention splits ", std::string(attn_splits), " op ", op);
      const uint64_t ops0 = vulkan_stats(*vk).ops;
      if (op == 0) {
        vk->rmsnorm(*ab, *nwv, 1e-5f, 1, *x);
        ref->rmsnorm(*a_ref, *nw_ref, 1e-5f, 1, *x_ref);
      } else if (op == 1) {
        vk->swiglu(*ab, *bb, size_t(cols), *x);
        ref->swiglu(*a_ref, *b_ref, size_t(cols), *x_ref);
      } else {
        vk->attention(*ab, *cache, 0, 1, &positions[19], shape, *x);
        ref->attention(*a_ref, *cache_ref, 0, 1, &positions[19], shape, *x_ref);
      }
      vk->matmul(*w, *x, 1, *y, false);
      CHECK(vulkan_stats(*vk).ops - ops0 == 2);  // the op with the digits, the matvec: no conversion between
      const std::vector<float> xv = read_all(*vk, *x), xr = read_all(*ref, *x_ref), got = read_all(*vk, *y);
      double worst = 0;
      for (size_t i = 0; i < xv.size(); ++i)
        worst = std::max(worst, double(std::fabs(xv[i] - xr[i])) / (std::fabs(xr[i]) + 1e-6));
      CHECK(worst <= (op == 0 ? 1e-6 : 0.0));  // rmsnorm: another order of the sum of squares
      auto x2 = make_buffer(*ref, xv), y2 = ref->alloc(size_t(rows));
      ref->matmul(*w_ref, *x2, 1, *y2, false);
      CHECK(read_all(*ref, *y2) == got);
    }
    check_clean(*vk);
    check_clean(*ref);
  }
}

TEST_CASE("vulkan tiled embed: rows equal the dense matrix exactly") {
  auto vk = make_vk();
  const RandomTiled t = make_random_tiled(300, 172, 64, 128, 64, table_of(5 * 2, -1, 8), 4);
  auto w = upload(*vk, t);
  const std::vector<int32_t> ids = {0, 299, 64, 63, 128, 7, 7, 250};
  auto out = vk->alloc(ids.size() * 172);
  vk->embed(*w, ids.data(), int(ids.size()), *out);
  const std::vector<float> got = read_all(*vk, *out);
  int bad = 0;
  for (size_t r = 0; r < ids.size(); ++r)
    for (int c = 0; c < 172; ++c) bad += got[r * 172 + c] != t.dense[size_t(ids[r]) * 172 + c];
  CHECK(bad == 0);
  check_clean(*vk);
}

TEST_CASE("vulkan tiled upload: a bad description is refused with the reason") {
  auto vk = make_vk();
  RandomTiled t = make_random_tiled(70, 130, 64, 128, 128, table_of(4, 2, 1), 2);
  HostWeight hw;
  hw.type = WeightType::tiled;
  hw.rows = 70;
  hw.cols = 130;
  hw.data = t.data;
  hw.bytes = t.bytes;
  CHECK_THROWS_WITH_AS(vk->upload(hw), doctest::Contains("HostWeight::tiled"), KernelError);
  hw.tiled = &t.desc;
  t.bits[3] = 7;
  CHECK_THROWS_WITH_AS(vk->upload(hw), doctest::Contains("tile (1, 1): bitwidth 7"), KernelError);
  t.bits[3] = 4;
  hw.bytes = t.bytes - 16;
  CHECK_THROWS_WITH_AS(vk->upload(hw), doctest::Contains("outside the"), KernelError);
  hw.bytes = t.bytes;
  auto w = vk->upload(hw);
  auto x = vk->alloc(70), y = vk->alloc(70);
  CHECK_THROWS_AS(vk->matmul(*w, *x, 1, *y, false),
                  KernelError);  // x too small for 130 columns
  check_clean(*vk);
}

}  // namespace sbits::kernels::test
