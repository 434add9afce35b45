// The CPU backend on tiled weights: matmul (decode n = 1..8 in registers, n = 9 and prefill
// through f32 scratch) and embed, against the dense f32 matrix of the same tiles
// (quant::dequantize_tile_row), with float64 dot products, for every bitwidth, mixed tiles,
// awkward shapes, both ISAs and several thread counts.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "tests/kernels/cpu_test_util.h"
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

// y = x W^T (+ y0) on `be`, checked against float64 dot products of the dense matrix: the error
// bound is relative to sum |w x|, the scale of rounding in any summation order.
void check_matmul(Backend& be, const RandomTiled& t, int n, bool accumulate, uint32_t seed) {
  const int64_t rows = t.desc.rows, cols = t.desc.cols;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(n * cols)), y0(size_t(n * rows));
  for (float& v : x) v = nd(rng);
  for (float& v : y0) v = nd(rng);
  auto w = upload(be, t);
  auto xb = be.alloc(x.size()), yb = be.alloc(y0.size());
  be.write(*xb, x.data(), x.size());
  be.write(*yb, y0.data(), y0.size());
  be.matmul(*w, *xb, n, *yb, accumulate);
  std::vector<float> y(y0.size());
  be.read(*yb, y.data(), y.size());
  int bad = 0;
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
      worst = std::max(worst, err);
      bad += err > 1e-5;
    }
  }
  INFO("worst relative error ", worst);
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("tiled matmul: every bitwidth and mixed tiles, awkward shapes, n = 1..9 and prefill") {
  struct Shape {
    int64_t rows, cols;
    int R, C, G;
  };
  const Shape shapes[] = {{172, 64, 64, 128, 128}, {64, 172, 64, 128, 128}, {100, 300, 64, 128, 32},
                          {1, 32, 64, 128, 128},   {130, 257, 16, 64, 32},  {33, 200, 64, 128, 64}};
  for (CpuIsa isa : test_isas()) {
    for (int threads : {1, 3}) {
      auto be = make_backend(isa, threads);
      for (const Shape& s : shapes) {
        const int64_t tiles = ((s.rows + s.R - 1) / s.R) * ((s.cols + s.C - 1) / s.C);
        for (int which = -1; which < 7; ++which) {
          const RandomTiled t = make_random_tiled(s.rows, s.cols, s.R, s.C, s.G, table_of(tiles, which, 3), 17);
          for (int n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 40}) {
            INFO(cpu_isa_name(isa), " threads ", threads, " shape ", s.rows, "x", s.cols, " R ", s.R, " C ", s.C,
                 " G ", s.G, " bits ", which < 0 ? -1 : int(kAllBits[which]), " n ", n);
            check_matmul(*be, t, n, n % 2 == 0, uint32_t(n));
          }
        }
      }
    }
  }
}

TEST_CASE("tiled matmul: a larger matrix in decode and prefill") {
  const RandomTiled t = make_random_tiled(512, 1536, 64, 128, 128, table_of(8 * 12, -1, 5), 23);
  for (CpuIsa isa : test_isas()) {
    auto be = make_backend(isa, 2);
    for (int n : {1, 8, 64}) {
      INFO(cpu_isa_name(isa), " n ", n);
      check_matmul(*be, t, n, false, 99);
    }
  }
}

TEST_CASE("tiled embed: rows equal the dense matrix exactly") {
  for (CpuIsa isa : test_isas()) {
    auto be = make_backend(isa, 2);
    const RandomTiled t = make_random_tiled(300, 172, 64, 128, 64, table_of(5 * 2, -1, 8), 4);
    auto w = upload(*be, t);
    const std::vector<int32_t> ids = {0, 299, 64, 63, 128, 7, 7, 250};
    auto out = be->alloc(ids.size() * 172);
    be->embed(*w, ids.data(), int(ids.size()), *out);
    std::vector<float> got(ids.size() * 172);
    be->read(*out, got.data(), got.size());
    int bad = 0;
    for (size_t r = 0; r < ids.size(); ++r)
      for (int c = 0; c < 172; ++c) bad += got[r * 172 + c] != t.dense[size_t(ids[r]) * 172 + c];
    INFO(cpu_isa_name(isa));
    CHECK(bad == 0);
  }
}

TEST_CASE("tiled upload: a bad description is refused with the reason") {
  auto be = make_backend(CpuIsa::scalar, 1);
  RandomTiled t = make_random_tiled(70, 130, 64, 128, 128, table_of(4, 2, 1), 2);
  HostWeight hw;
  hw.type = WeightType::tiled;
  hw.rows = 70;
  hw.cols = 130;
  hw.data = t.data;
  hw.bytes = t.bytes;
  CHECK_THROWS_WITH_AS(be->upload(hw), doctest::Contains("HostWeight::tiled"), KernelError);
  hw.tiled = &t.desc;
  t.bits[3] = 7;
  CHECK_THROWS_WITH_AS(be->upload(hw), doctest::Contains("tile (1, 1): bitwidth 7"), KernelError);
  t.bits[3] = 16;
  CHECK_THROWS_WITH_AS(be->upload(hw), doctest::Contains("outside the"), KernelError);  // f16 tile is larger
  t.bits[3] = 4;
  hw.bytes = t.bytes - 16;
  CHECK_THROWS_WITH_AS(be->upload(hw), doctest::Contains("outside the"), KernelError);
  hw.bytes = t.bytes;
  auto w = be->upload(hw);
  auto x = be->alloc(70), y = be->alloc(70);
  CHECK_THROWS_AS(be->matmul(*w, *x, 1, *y, false), KernelError);  // x too small for 130 columns
}

}  // namespace sbits::kernels::test
