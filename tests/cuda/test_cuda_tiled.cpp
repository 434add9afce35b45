// Tiled mixed-bitwidth weights on the CUDA backend: matmul for every bitwidth and for mixed
// tiles, through each kernel variant and split-K setting, at awkward shapes, against float64
// dot products of the dense matrix the tiles decode to (quant::dequantize_tile_row); embed
// against the dense rows exactly.
//
// Tolerances, relative to sum |w x| of each output: the tensor-core kernel multiplies exact
// codes by x rounded to f16 (at most 2^-11 relative each): 1e-3; variant 6 (n = 1) writes that f16 x
// as two int8 digits per 32 columns (within 2^-15 of their largest): 1e-3 too. The generic kernel is f32:
// 1e-5. Prefill (n > 8) also rounds the weights to f16: 2e-3.
#include <doctest/doctest.h>

#include "kernels/cuda/launch.h"  // kTiledMmaVariants
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/tiled/tiled_test_util.h"

namespace sbits::kernels::test {
namespace {

const uint8_t kAllBits[] = {2, 3, 4, 5, 6, 8, 16};

std::vector<uint8_t> table_of(int64_t tiles, int which, uint32_t seed) {
  std::vector<uint8_t> t(static_cast<size_t>(tiles));
  std::mt19937 rng(seed);
  for (auto& b : t) b = which < 0 ? kAllBits[rng() % 7] : kAllBits[which];
  return t;
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

bool mma_layout(const RandomTiled& t) {
  return t.desc.tile_rows % 16 == 0 && t.desc.tile_cols == 128 && t.desc.group == 128;
}

// Returns the worst error relative to sum |w x| (+ |y0|).
double matmul_error(Backend& be, const Weight& w, const RandomTiled& t, int n, bool accumulate, uint32_t seed) {
  const int64_t rows = t.desc.rows, cols = t.desc.cols;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(n * cols)), y0(size_t(n * rows));
  for (float& v : x) v = nd(rng);
  for (float& v : y0) v = nd(rng);
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
        const double p = double(t.dense[size_t(o * cols + i)]) * x[size_t(j * cols + i)];
        ref += p;
        mag += std::fabs(p);
      }
      const double err = std::fabs(double(y[size_t(j * rows + o)]) - ref) / (mag + 1e-30);
      worst = std::isnan(err) ? INFINITY : std::max(worst, err);
    }
  }
  return worst;
}

double tolerance(const RandomTiled& t, int n) { return n > 8 ? 2e-3 : mma_layout(t) ? 1e-3 : 1e-5; }

struct Shape {
  int64_t rows, cols;
  int R, C, G;
};

// A random weight of shape s whose tiles' bitwidths come from table_of(tiles, which, table_seed).
RandomTiled random_weight(const Shape& s, int which, uint32_t table_seed, uint32_t seed) {
  const int64_t tiles = ((s.rows + s.R - 1) / s.R) * ((s.cols + s.C - 1) / s.C);
  return make_random_tiled(s.rows, s.cols, s.R, s.C, s.G, table_of(tiles, which, table_seed), seed);
}

}  // namespace

TEST_CASE("cuda tiled matmul: every bitwidth and mixed tiles, awkward shapes, n = 1..9 and prefill") {
  // The first shapes take the tensor-core kernel (R % 16 == 0, C = G = 128), with edge tiles in
  // both directions; the others (G != 128, C != 128, R = 20) take the generic kernel.
  const Shape shapes[] = {{172, 64, 64, 128, 128},   {64, 172, 64, 128, 128},  {200, 300, 64, 128, 128},
                          {1, 32, 64, 128, 128},     {130, 1000, 16, 128, 128}, {96, 257, 32, 128, 128},
                          {200, 384, 64, 128, 128},  {70, 256, 64, 128, 128},
                          {100, 300, 64, 128, 32},   {130, 257, 16, 64, 32},   {33, 200, 20, 128, 128}};
  // Variant 6 with each of its rows-per-lane settings (8 is the default).
  for (int variant = 0; variant < cuda::kTiledMmaVariants; ++variant) {
    for (const char* steps : {"8", "4", "2"}) {
      if (variant != cuda::kTiledDp4aVariant && *steps != '8') continue;
      ScopedEnv env("SBITS_CUDA_MMA_VARIANT", std::to_string(variant));
      ScopedEnv env_steps("SBITS_CUDA_DP4A_STEPS", steps);
      auto gpu = make_cuda();
      for (const Shape& s : shapes) {
        if (variant > 0 && !(s.R % 16 == 0 && s.C == 128 && s.G == 128)) continue;  // generic path: once
        for (int which = -1; which < 7; ++which) {
          const RandomTiled t = random_weight(s, which, 3, 17);
          auto w = upload(*gpu, t);
          for (int n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 40}) {
            if (variant > 0 && n > 8) continue;
            INFO("variant ", variant, " steps ", steps, " shape ", s.rows, "x", s.cols, " R ", s.R, " C ", s.C, " G ",
                 s.G, " bits ", which < 0 ? -1 : int(kAllBits[which]), " n ", n);
            CHECK(matmul_error(*gpu, *w, t, n, n % 2 == 0, uint32_t(n)) <= tolerance(t, n));
          }
        }
      }
    }
  }
}

// Prefill multiplies f16 weights that the backend dequantizes chunk by chunk. With x the
// identity (x row j = column j), y[j][o] is the f16 weight cuBLAS saw, times 1 plus zeros: it
// must be the reference value rounded once to f16, bit for bit, for every bitwidth, edge
// tile and shape (16-byte and element-wise stores alike).
TEST_CASE("cuda tiled prefill: the f16 weights are the reference values rounded once (identity x)") {
  const Shape shapes[] = {{172, 64, 64, 128, 128}, {200, 300, 64, 128, 128}, {96, 257, 32, 128, 128},
                          {70, 256, 64, 128, 128}, {100, 300, 64, 128, 32},  {130, 257, 16, 64, 32}};
  auto gpu = make_cuda();
  for (const Shape& s : shapes) {
    const RandomTiled t = random_weight(s, -1, 11, 31);
    auto w = upload(*gpu, t);
    const int n = int(s.cols);
    std::vector<float> x(size_t(n * s.cols), 0.0f);
    for (int j = 0; j < n; ++j) x[size_t(j * s.cols + j)] = 1.0f;
    auto xb = gpu->alloc(x.size()), yb = gpu->alloc(size_t(n * s.rows));
    gpu->write(*xb, x.data(), x.size());
    gpu->matmul(*w, *xb, n, *yb, false);
    const std::vector<float> y = read_all(*gpu, *yb);
    int64_t wrong = 0;
    for (int j = 0; j < n; ++j)
      for (int64_t o = 0; o < s.rows; ++o) {
        const float want = quant::half_to_float(ref_f32_to_f16(t.dense[size_t(o * s.cols + j)]));
        if (y[size_t(j * s.rows + o)] != want) ++wrong;
      }
    INFO("shape ", s.rows, "x", s.cols, " R ", s.R, " C ", s.C, " G ", s.G);
    CHECK(wrong == 0);
  }
}

TEST_CASE("cuda tiled matmul: larger matrices, with and without split-K, every variant and the default choice") {
  const Shape shapes[] = {{512, 1536, 64, 128, 128}, {1000, 4096, 64, 128, 128}, {4096, 700, 64, 128, 128}};
  // variant == kTiledMmaVariants: none forced, the backend picks per weight and n (variant 6 for
  // n = 1 on the 4096-column shape, 5 or 2 otherwise).
  // Variant 6 adds 2..8 splits in a thread-block cluster (1 warp/SM here: 2 or 3 splits) and more
  // through global partials; SBITS_CUDA_SPLITK_CLUSTER=0 takes the partials for all.
  for (int variant = 0; variant <= cuda::kTiledMmaVariants; ++variant) {
    for (const char* warps : {"1", "8", "64"}) {  // few warps: no split; many: deep split-K
      for (const char* cluster : {"1", "0"}) {
        if (*cluster == '0' && variant != cuda::kTiledDp4aVariant) continue;
        ScopedEnv e1("SBITS_CUDA_MMA_VARIANT", variant < cuda::kTiledMmaVariants ? std::to_string(variant) : "");
        ScopedEnv e2("SBITS_CUDA_MMA_WARPS_PER_SM", warps);
        ScopedEnv e3("SBITS_CUDA_SPLITK_CLUSTER", cluster);
        auto gpu = make_cuda();
        for (const Shape& s : shapes) {
          const RandomTiled t = random_weight(s, -1, 5, 23);
          auto w = upload(*gpu, t);
          for (int n : {1, 8}) {
            INFO("variant ", variant, " warps/SM ", warps, " cluster ", cluster, " shape ", s.rows, "x", s.cols, " n ", n);
            CHECK(matmul_error(*gpu, *w, t, n, n == 8, 99) <= 1e-3);
          }
        }
      }
    }
  }
}

TEST_CASE("cuda tiled matmul: variants 4 and 5 with shallow and deep rings, mixed bitwidths with f16 tiles") {
  const Shape shapes[] = {{777, 1100, 64, 128, 128}, {4096, 4096, 64, 128, 128}, {200, 11008, 64, 128, 128}};
  for (const char* ring : {"2048", "12288", "65536"})  // 2 slots per warp .. up to 8
  for (const char* variant : {"4", "5"}) {
    ScopedEnv e1("SBITS_CUDA_MMA_VARIANT", variant);
    ScopedEnv e2("SBITS_CUDA_MMA_RING_BYTES", ring);
    auto gpu = make_cuda();
    for (const Shape& s : shapes) {
      const RandomTiled t = random_weight(s, -1, 41, 43);
      auto w = upload(*gpu, t);
      for (int n : {1, 2, 5, 8}) {
        INFO("variant ", variant, " ring bytes ", ring, " shape ", s.rows, "x", s.cols, " n ", n);
        CHECK(matmul_error(*gpu, *w, t, n, n % 2 == 1, uint32_t(7 + n)) <= 1e-3);
      }
    }
  }
}

TEST_CASE("cuda tiled matmul: repeated calls replay a graph and give the same bits, with and without PDL") {
  for (const char* pdl : {"0", "1"}) {
  ScopedEnv env("SBITS_CUDA_PDL", pdl);
  INFO("pdl " << pdl);
  auto gpu = make_cuda();
  const RandomTiled t = make_random_tiled(777, 1100, 64, 128, 128, table_of(13 * 9, -1, 9), 31);
  auto w = upload(*gpu, t);
  std::mt19937_64 rng(12);
  const std::vector<float> x = random_floats(rng, 2 * 1100);
  auto xb = make_buffer(*gpu, x), yb = gpu->alloc(2 * 777);
  std::vector<float> first;
  for (int step = 0; step < 5; ++step) {
    gpu->matmul(*w, *xb, 2, *yb, false);
    gpu->matmul(*w, *xb, 2, *yb, true);
    const std::vector<float> y = read_all(*gpu, *yb);
    if (step == 0) first = y;
    CHECK(y == first);  // deterministic: fixed reduction order, graph or not
  }
  CHECK(matmul_error(*gpu, *w, t, 3, true, 5) <= 1e-3);
  const CudaStats s = cuda_stats(*gpu);
  CHECK(s.graph_captures >= 1);
  CHECK(s.graph_launches >= 3);
  }
}

TEST_CASE("cuda tiled embed: rows equal the dense matrix exactly") {
  auto gpu = make_cuda();
  const RandomTiled t = make_random_tiled(300, 172, 64, 128, 64, table_of(5 * 2, -1, 8), 4);
  auto w = upload(*gpu, t);
  const std::vector<int32_t> ids = {0, 299, 64, 63, 128, 7, 7, 250};
  auto out = gpu->alloc(ids.size() * 172);
  gpu->embed(*w, ids.data(), int(ids.size()), *out);
  const std::vector<float> got = read_all(*gpu, *out);
  int bad = 0;
  for (size_t r = 0; r < ids.size(); ++r)
    for (int c = 0; c < 172; ++c) bad += got[r * 172 + c] != t.dense[size_t(ids[r]) * 172 + c];
  CHECK(bad == 0);
}

TEST_CASE("cuda tiled upload: a bad description is refused with the reason") {
  auto gpu = make_cuda();
  RandomTiled t = make_random_tiled(70, 130, 64, 128, 128, table_of(4, 2, 1), 2);
  HostWeight hw;
  hw.type = WeightType::tiled;
  hw.rows = 70;
  hw.cols = 130;
  hw.data = t.data;
  hw.bytes = t.bytes;
  CHECK_THROWS_WITH_AS(gpu->upload(hw), doctest::Contains("HostWeight::tiled"), KernelError);
  hw.tiled = &t.desc;
  t.bits[3] = 7;
  CHECK_THROWS_WITH_AS(gpu->upload(hw), doctest::Contains("tile (1, 1): bitwidth 7"), KernelError);
  t.bits[3] = 4;
  hw.bytes = t.bytes - 16;
  CHECK_THROWS_WITH_AS(gpu->upload(hw), doctest::Contains("outside the"), KernelError);
  hw.bytes = t.bytes;
  auto w = gpu->upload(hw);
  auto x = gpu->alloc(70), y = gpu->alloc(70);
  CHECK_THROWS_AS(gpu->matmul(*w, *x, 1, *y, false), KernelError);  // x too small for 130 columns
}

}  // namespace sbits::kernels::test
