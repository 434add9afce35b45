// The row and element-wise ops against float64 references: embed, get_rows, rmsnorm, rope,
// swiglu, add; plus backend setup (ISA choice, description).
#include <doctest/doctest.h>

#include <cfloat>
#include <cstdlib>
#include <string>

#include "tests/kernels/cpu_test_util.h"

namespace sbits::kernels::test {
namespace {

// rmsnorm: the sum of squares is taken in double, leaving the f32 rounding of 1/rms, of x * inv
// and of the product with w: about 3 half-ulps; 1e-6 relative leaves margin.
constexpr double kNormRelTol = 1e-6;
// rope: cos/sin are rounded to f32 and each output is a0*c -/+ a1*s in f32: a few ulps of the
// pair's magnitude, for any position (the angle is formed in double).
constexpr double kRopeTol = 1e-6;
// swiglu: exp is within ~2 ulps (AVX2 polynomial) and the sigmoid adds a division and a
// multiply; 2e-6 relative.
constexpr double kSwigluRelTol = 2e-6;
// AVX2 swiglu flushes silu(g) for g < -87 (true magnitude < 1e-36) to zero.
constexpr double kSwigluAbsTol = 1e-35;

const int kWidths[] = {1, 2, 7, 8, 13, 16, 31, 64, 70, 4096};

TEST_CASE("cpu ops: embed copies the rows named by ids, every type and ISA") {
  for (CpuIsa isa : test_isas()) {
    auto be = make_backend(isa, 2);
    for (WeightType type : kWeightTypes) {
      std::mt19937_64 rng(11);
      const TestWeight t = make_weight(type, 37, 23, rng, 3);
      auto w = be->upload(t.host);
      const std::vector<int32_t> ids = {0, 36, 5, 5, 17, 1, 36, 2, 30};
      auto out = be->alloc(ids.size() * 23);
      be->embed(*w, ids.data(), int(ids.size()), *out);
      const std::vector<float> got = read_all(*be, *out);
      for (size_t r = 0; r < ids.size(); ++r)
        for (size_t c = 0; c < 23; ++c) REQUIRE(double(got[r * 23 + c]) == t.values[size_t(ids[r]) * 23 + c]);
    }
  }
}

TEST_CASE("cpu ops: get_rows gathers rows, repeats allowed") {
  auto be = make_backend(CpuIsa::scalar, 1);
  std::mt19937_64 rng(12);
  const std::vector<float> x = random_floats(rng, 9 * 13);
  const std::vector<int32_t> idx = {8, 0, 3, 3, 7};
  auto xb = make_buffer(*be, x);
  auto out = be->alloc(idx.size() * 13);
  be->get_rows(*xb, idx.data(), int(idx.size()), 13, *out);
  const std::vector<float> got = read_all(*be, *out);
  for (size_t r = 0; r < idx.size(); ++r)
    for (size_t c = 0; c < 13; ++c) REQUIRE(got[r * 13 + c] == x[size_t(idx[r]) * 13 + c]);
}

void check_rmsnorm(Backend& be, WeightType type, int width, int n, float scale, bool in_place) {
  std::mt19937_64 rng{uint64_t(width * 7 + n)};
  const TestWeight w = make_weight(type, 1, width, rng, 1, 2.0f);
  std::vector<float> x = random_floats(rng, size_t(n * width), -scale, scale);
  const float eps = 1e-5f;
  auto wd = be.upload(w.host);
  auto xb = make_buffer(be, x);
  auto ob = in_place ? nullptr : be.alloc(x.size());
  Buffer& out = in_place ? *xb : *ob;
  be.rmsnorm(*xb, *wd, eps, n, out);
  const std::vector<float> got = read_all(be, out);
  for (int r = 0; r < n; ++r) {
    double ss = 0;
    for (int i = 0; i < width; ++i) ss += double(x[size_t(r * width + i)]) * x[size_t(r * width + i)];
    const double inv = 1.0 / std::sqrt(ss / width + double(eps));
    for (int i = 0; i < width; ++i) {
      const size_t k = size_t(r * width + i);
      const double ref = double(x[k]) * inv * w.values[size_t(i)];
      REQUIRE(std::fabs(double(got[k]) - ref) <= kNormRelTol * std::fabs(ref) + 1e-30);
    }
  }
}

TEST_CASE("cpu ops: rmsnorm matches float64, including huge and tiny magnitudes") {
  for (CpuIsa isa : test_isas()) {
    auto be = make_backend(isa, 2);
    for (WeightType type : kWeightTypes) {
      CAPTURE(cpu_isa_name(isa));
      CAPTURE(weight_type_name(type));
      for (int width : kWidths)
        for (int n : {1, 3, 37}) check_rmsnorm(*be, type, width, n, 1.0f, n == 3);
      // x^2 overflows f32 at 1e20 and underflows at 1e-25: the double accumulation does not.
      check_rmsnorm(*be, type, 64, 2, 1e20f, false);
      check_rmsnorm(*be, type, 64, 2, 1e-25f, false);
    }
  }
}

void rope_reference(std::vector<double>& v, int n_heads, int hd, int pos, double theta, RopeStyle style) {
  for (int h = 0; h < n_heads; ++h) {
    for (int i = 0; i < hd / 2; ++i) {
      const int a = style == RopeStyle::neox ? i : 2 * i;
      const int b = style == RopeStyle::neox ? i + hd / 2 : 2 * i + 1;
      const double ang = pos * std::pow(theta, -2.0 * i / hd);
      double& x0 = v[size_t(h * hd + a)];
      double& x1 = v[size_t(h * hd + b)];
      const double r0 = x0 * std::cos(ang) - x1 * std::sin(ang), r1 = x0 * std::sin(ang) + x1 * std::cos(ang);
      x0 = r0, x1 = r1;
    }
  }
}

TEST_CASE("cpu ops: rope, both styles, large positions, against float64") {
  const int positions[] = {0, 1, 2, 17, 1000, 65535, 131071, 500000, 2000000};
  for (CpuIsa isa : test_isas()) {
    auto be = make_backend(isa, 2);
    for (RopeStyle style : {RopeStyle::neox, RopeStyle::interleaved}) {
      for (int hd : {2, 6, 64, 128}) {
        for (float theta : {10000.0f, 500000.0f}) {
          const int n_heads = 3, n = int(std::size(positions)), width = n_heads * hd;
          std::mt19937_64 rng{uint64_t(hd)};
          const std::vector<float> x = random_floats(rng, size_t(n * width));
          std::vector<RowInfo> rows(static_cast<size_t>(n));
          for (int r = 0; r < n; ++r) rows[size_t(r)] = RowInfo{r % 2, positions[r]};
          auto xb = make_buffer(*be, x);
          be->rope(*xb, n, n_heads, hd, rows.data(), theta, style);
          const std::vector<float> got = read_all(*be, *xb);
          for (int r = 0; r < n; ++r) {
            std::vector<double> ref(x.begin() + r * width, x.begin() + (r + 1) * width);
            rope_reference(ref, n_heads, hd, positions[r], theta, style);
            for (int i = 0; i < width; ++i)
              REQUIRE(std::fabs(double(got[size_t(r * width + i)]) - ref[size_t(i)]) <= kRopeTol);
          }
        }
      }
    }
  }
}

double silu_ref(double g) { return g / (1.0 + std::exp(-g)); }

TEST_CASE("cpu ops: swiglu over a wide range, in place, without overflow") {
  std::mt19937_64 rng(21);
  std::vector<float> g = random_floats(rng, 1000, -30.0f, 30.0f);
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 80.0f, 88.0f, 89.0f, 100.0f, 1e30f, -80.0f, -87.5f, -88.0f,
                  -89.0f, -100.0f, -1e30f, FLT_MAX, -FLT_MAX})
    g.push_back(v);
  g.resize(g.size() + 3, 0.5f);  // a tail that is not a multiple of 8
  const std::vector<float> u = random_floats(rng, g.size(), -2.0f, 2.0f);
  for (CpuIsa isa : test_isas()) {
    auto be = make_backend(isa, 2);
    auto gb = make_buffer(*be, g), ub = make_buffer(*be, u);
    be->swiglu(*gb, *ub, g.size(), *gb);  // out aliases gate
    const std::vector<float> got = read_all(*be, *gb);
    for (size_t i = 0; i < g.size(); ++i) {
      CAPTURE(g[i]);
      const double ref = silu_ref(g[i]) * u[i];
      if (std::fabs(ref) > FLT_MAX) {  // FLT_MAX * u may overflow f32
        CHECK(std::isinf(got[i]));
        continue;
      }
      REQUIRE(std::isfinite(got[i]));
      REQUIRE(std::fabs(double(got[i]) - ref) <= kSwigluRelTol * std::fabs(ref) + kSwigluAbsTol);
    }
    // -inf gives the limit 0, not NaN; NaN propagates.
    auto sb = make_buffer(*be, {-INFINITY, NAN, INFINITY}), ob = be->alloc(3);
    auto one = make_buffer(*be, {1.0f, 1.0f, 1.0f});
    be->swiglu(*sb, *one, 3, *ob);
    const std::vector<float> s = read_all(*be, *ob);
    CHECK(s[0] == 0.0f);
    CHECK(std::isnan(s[1]));
    CHECK(s[2] == INFINITY);
  }
}

TEST_CASE("cpu ops: add, large enough to be split across threads") {
  for (CpuIsa isa : test_isas()) {
    auto be = make_backend(isa, 3);
    std::mt19937_64 rng(31);
    for (size_t count : {size_t(1), size_t(13), size_t(200003)}) {
      const std::vector<float> x = random_floats(rng, count + 5), y = random_floats(rng, count);
      auto xb = make_buffer(*be, x), yb = make_buffer(*be, y);
      be->add(*xb, *yb, count);
      const std::vector<float> got = read_all(*be, *xb);
      for (size_t i = 0; i < count; ++i) REQUIRE(got[i] == x[i] + y[i]);
      for (size_t i = count; i < count + 5; ++i) REQUIRE(got[i] == x[i]);  // past count: untouched
    }
  }
}

TEST_CASE("cpu backend: ISA choice from SBITS_CPU_ISA and the description") {
  const char* old = std::getenv("SBITS_CPU_ISA");
  const std::string saved = old ? old : "";
  setenv("SBITS_CPU_ISA", "scalar", 1);
  CHECK(cpu_default_isa() == CpuIsa::scalar);
  auto be = make_cpu_backend(2);
  CHECK(be->name() == "cpu");
  CHECK(be->device_description().find("(2 threads, scalar)") != std::string::npos);
  setenv("SBITS_CPU_ISA", "sse9", 1);
  CHECK_THROWS_AS(make_cpu_backend(1), KernelError);
  setenv("SBITS_CPU_ISA", "auto", 1);
  CHECK(cpu_default_isa() == (cpu_supports_avx2() ? CpuIsa::avx2 : CpuIsa::scalar));
  if (cpu_supports_avx2())
    CHECK(make_cpu_backend(1)->device_description().find("avx2+fma+f16c") != std::string::npos);
  if (old) {
    setenv("SBITS_CPU_ISA", saved.c_str(), 1);
  } else {
    unsetenv("SBITS_CPU_ISA");
  }
  CHECK(make_cpu_backend(0)->device_description().find("thread") != std::string::npos);
  CHECK_THROWS_AS(make_cpu_backend(-1), KernelError);
}

}  // namespace
}  // namespace sbits::kernels::test
