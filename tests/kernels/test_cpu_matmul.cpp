// matmul against a float64 reference: every weight type, both ISAs, awkward sizes (1..70,
// primes, non-multiples of 8/16/32), decode sizes n = 1..9 and a prefill size, misaligned
// weights, accumulate, several threads, and x blocks smaller than n (very long rows).
#include <doctest/doctest.h>

#include <cfloat>

#include "tests/kernels/cpu_test_util.h"

namespace sbits::kernels::test {
namespace {

// Tolerance of an f32 dot product of length k, relative to sum |w_i x_i| (plus |y| when
// accumulating): rounding errors of k f32 additions grow like a random walk, ~sqrt(k) half-ulps
// (the kernels sum in 8 lanes, which only helps); 4 ulps per sqrt(k) leaves a wide margin while
// still catching a single wrong or missing term (an error of order 1/k of the sum).
constexpr double kDotTolPerSqrtK = 4 * FLT_EPSILON;

struct Case {
  int64_t rows, cols;
  int n;
};

// y = (y0 +) x W^T in float64, with the magnitude sum for the tolerance.
void reference(const TestWeight& w, const std::vector<float>& x, int n, const std::vector<float>& y0,
               bool accumulate, std::vector<double>& y, std::vector<double>& mag) {
  const int64_t rows = w.host.rows, cols = w.host.cols;
  y.assign(size_t(n * rows), 0.0);
  mag.assign(y.size(), 0.0);
  for (int r = 0; r < n; ++r) {
    for (int64_t o = 0; o < rows; ++o) {
      double s = 0, m = 0;
      for (int64_t i = 0; i < cols; ++i) {
        const double t = w.values[size_t(o * cols + i)] * double(x[size_t(r * cols + i)]);
        s += t;
        m += std::fabs(t);
      }
      const size_t idx = size_t(r * rows + o);
      if (accumulate) s += y0[idx], m += std::fabs(y0[idx]);
      y[idx] = s;
      mag[idx] = m;
    }
  }
}

// Runs one matmul and returns the number of outputs outside the tolerance.
int run_case(Backend& be, WeightType type, const Case& c, size_t misalign, bool accumulate, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const TestWeight w = make_weight(type, c.rows, c.cols, rng, misalign);
  const std::vector<float> x = random_floats(rng, size_t(c.n * c.cols));
  const std::vector<float> y0 = random_floats(rng, size_t(c.n * c.rows));
  auto wd = be.upload(w.host);
  auto xb = make_buffer(be, x);
  auto yb = make_buffer(be, y0);
  be.matmul(*wd, *xb, c.n, *yb, accumulate);
  const std::vector<float> got = read_all(be, *yb);
  std::vector<double> ref, mag;
  reference(w, x, c.n, y0, accumulate, ref, mag);
  const double tol = kDotTolPerSqrtK * std::sqrt(double(c.cols + (accumulate ? 1 : 0)));
  int bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::fabs(double(got[i]) - ref[i]) > tol * mag[i] + 1e-30) {
      if (++bad <= 3)
        FAIL_CHECK("output " << i << ": got " << got[i] << ", want " << ref[i] << " (rows=" << c.rows
                             << " cols=" << c.cols << " n=" << c.n << ")");
    }
  }
  return bad;
}

TEST_CASE("cpu matmul: awkward shapes, every weight type and ISA, decode and prefill") {
  const int64_t rows_list[] = {1, 3, 7, 16, 17, 33, 64, 70};
  const int64_t cols_list[] = {1, 5, 8, 13, 31, 32, 47, 64, 70};
  const int n_list[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 37};
  for (CpuIsa isa : test_isas()) {
    auto be = make_backend(isa, 3);  // more threads than chunks for most shapes
    for (WeightType type : kWeightTypes) {
      CAPTURE(cpu_isa_name(isa));
      CAPTURE(weight_type_name(type));
      int bad = 0, k = 0;
      for (int64_t rows : rows_list)
        for (int64_t cols : cols_list)
          for (int n : n_list) {
            const size_t misalign = size_t(k % 4);  // 0..3 bytes: unaligned for every type
            bad += run_case(*be, type, Case{rows, cols, n}, misalign, k % 3 == 0, uint64_t(1000 + k));
            ++k;
          }
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("cpu matmul: larger shapes split across threads, every n from 1 to 9") {
  for (CpuIsa isa : test_isas()) {
    for (int threads : {1, 2, 4}) {
      auto be = make_backend(isa, threads);
      for (WeightType type : kWeightTypes) {
        CAPTURE(cpu_isa_name(isa));
        CAPTURE(threads);
        CAPTURE(weight_type_name(type));
        for (int n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 64})
          CHECK(run_case(*be, type, Case{613, 136, n}, 2, n % 2 == 1, uint64_t(77 + n)) == 0);
      }
    }
  }
}

TEST_CASE("cpu matmul: rows longer than a prefill block (several x blocks per call)") {
  for (CpuIsa isa : test_isas()) {
    auto be = make_backend(isa, 2);
    for (WeightType type : kWeightTypes) {
      CAPTURE(cpu_isa_name(isa));
      CAPTURE(weight_type_name(type));
      // 20011 columns: a 48Ki-float block holds 2 rows of x, so 11 rows need several blocks.
      CHECK(run_case(*be, type, Case{21, 20011, 11}, 1, false, 5) == 0);
      CHECK(run_case(*be, type, Case{5, 20011, 1}, 0, true, 6) == 0);
    }
  }
}

TEST_CASE("cpu matmul: n = 0 leaves y untouched") {
  for (CpuIsa isa : test_isas()) {
    auto be = make_backend(isa, 2);
    std::mt19937_64 rng(9);
    const TestWeight w = make_weight(WeightType::bf16, 4, 4, rng);
    auto wd = be->upload(w.host);
    auto x = make_buffer(*be, std::vector<float>(4, 1.0f));
    auto y = make_buffer(*be, std::vector<float>(4, 7.0f));
    be->matmul(*wd, *x, 0, *y, false);
    CHECK(read_all(*be, *y) == std::vector<float>(4, 7.0f));
  }
}

}  // namespace
}  // namespace sbits::kernels::test
