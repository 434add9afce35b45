// Per-tile quantizers on synthetic data where the answer is known: exact grids, the mse search
// against rtn in the weighted error, GPTQ against both in output error on correlated inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "quantizer/tile_quant.h"

namespace sbits::quantizer {
namespace {

const int kCodecBits[] = {2, 3, 4, 5, 6, 8};

// Gaussian weights with a few outliers (what trained linear layers look like).
std::vector<float> gaussian(size_t n, uint32_t seed, float outlier_rate = 0.01f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng) * (u(rng) < outlier_rate ? 8.0f : 1.0f);
  return v;
}

std::vector<float> importance(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> ln(0.0f, 1.5f);  // a few input channels dominate, as in LLMs
  std::vector<float> h(n);
  for (float& x : h) x = ln(rng);
  return h;
}

// Inputs with AR(1)-correlated columns: x_c = rho x_{c-1} + sqrt(1 - rho^2) z_c, times a
// per-column scale. Returns H = X^T X ([cols][cols]) and X ([n][cols]).
void correlated_inputs(int n, int cols, float rho, uint32_t seed, std::vector<float>& x, std::vector<float>& h) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> scale = importance(size_t(cols), seed + 1);
  x.assign(size_t(n) * cols, 0.0f);
  for (int i = 0; i < n; ++i) {
    float prev = nd(rng);
    for (int c = 0; c < cols; ++c) {
      prev = rho * prev + std::sqrt(1.0f - rho * rho) * nd(rng);
      x[size_t(i) * cols + c] = prev * std::sqrt(scale[c]);
    }
  }
  h.assign(size_t(cols) * cols, 0.0f);
  for (int a = 0; a < cols; ++a) {
    for (int b = 0; b < cols; ++b) {
      double s = 0;
      for (int i = 0; i < n; ++i) s += double(x[size_t(i) * cols + a]) * x[size_t(i) * cols + b];
      h[size_t(a) * cols + b] = float(s);
    }
  }
}

// ||X (W - W^)^T||^2 = sum_r d_r^T H d_r.
double output_error(const TileInput& in, const TileCodes& c, const std::vector<float>& h) {
  double total = 0.0;
  std::vector<double> d(size_t(in.cols));
  for (int r = 0; r < in.rows; ++r) {
    for (int j = 0; j < in.cols; ++j) d[j] = double(in.w[size_t(r) * in.ldw + j]) - c.value(r, j);
    for (int a = 0; a < in.cols; ++a)
      for (int b = 0; b < in.cols; ++b) total += d[a] * h[size_t(a) * in.cols + b] * d[b];
  }
  return total;
}

}  // namespace

TEST_CASE("rtn reproduces weights that lie on an f16 grid exactly") {
  for (int bits : kCodecBits) {
    CAPTURE(bits);
    const float scale = 0.0078125f, min = -0.5f;  // both exact in f16
    const int maxq = (1 << bits) - 1;
    std::vector<float> w(128);
    for (int i = 0; i < 128; ++i) w[i] = min + scale * float((i * 7) % (maxq + 1));
    w[0] = min;
    w[1] = min + scale * float(maxq);
    const GroupFit f = fit_group_rtn(w.data(), 128, bits);
    std::vector<uint8_t> q(128);
    CHECK(quantize_group(w.data(), nullptr, 128, bits, f, q.data()) == 0.0);
    CHECK(f.scale == scale);
    CHECK(f.min == min);
  }
}

TEST_CASE("rtn error is at most half a step per weight") {
  const std::vector<float> w = gaussian(128 * 64, 1);
  for (int bits : kCodecBits) {
    for (int g = 0; g < 64; ++g) {
      const float* wg = &w[size_t(g) * 128];
      const GroupFit f = fit_group_rtn(wg, 128, bits);
      std::vector<uint8_t> q(128);
      quantize_group(wg, nullptr, 128, bits, f, q.data());
      for (int i = 0; i < 128; ++i) {
        const float v = fmaf(float(q[i]), f.scale, f.min);
        REQUIRE(std::fabs(v - wg[i]) <= 0.5f * f.scale * 1.001f + 1e-6f);
      }
    }
  }
}

TEST_CASE("mse is never worse than rtn in the weighted error, and clearly better at low bits") {
  const int rows = 64, cols = 128;
  for (uint32_t seed : {1u, 2u, 3u}) {
    const std::vector<float> w = gaussian(size_t(rows) * cols, seed, seed == 3 ? 0.05f : 0.01f);
    const std::vector<float> h = importance(cols, seed + 10);
    for (bool weighted : {false, true}) {
      for (int group : {32, 64, 128}) {
        for (int bits : kCodecBits) {
          INFO("seed=", seed, " ", "weighted=", weighted, " ", "group=", group, " ", "bits=", bits);
          TileInput in;
          in.w = w.data();
          in.ldw = cols;
          in.rows = rows;
          in.cols = cols;
          in.group = group;
          in.bits = bits;
          in.h = weighted ? h.data() : nullptr;
          const double e_rtn = weighted_error(in, quantize_tile(in, TileMethod::rtn));
          const double e_mse = weighted_error(in, quantize_tile(in, TileMethod::mse));
          CHECK(e_mse <= e_rtn * (1.0 + 1e-12));
          if (bits <= 3 && group == 128) CHECK(e_mse < 0.9 * e_rtn);
        }
      }
    }
  }
}

TEST_CASE("gptq lowers the output error on correlated inputs") {
  const int rows = 64, cols = 128, n = 1024;
  std::vector<float> x, h;
  correlated_inputs(n, cols, 0.9f, 7, x, h);
  std::vector<float> hdiag(cols);
  for (int c = 0; c < cols; ++c) hdiag[c] = h[size_t(c) * cols + c];
  const std::vector<float> w = gaussian(size_t(rows) * cols, 11);
  const GptqFactor factor = make_gptq_factor(h.data(), cols, cols);
  for (int bits : {2, 3, 4}) {
    CAPTURE(bits);
    TileInput in;
    in.w = w.data();
    in.ldw = cols;
    in.rows = rows;
    in.cols = cols;
    in.group = 128;
    in.bits = bits;
    in.h = hdiag.data();
    in.gptq = &factor;
    const double e_rtn = output_error(in, quantize_tile(in, TileMethod::rtn), h);
    const double e_mse = output_error(in, quantize_tile(in, TileMethod::mse), h);
    const double e_gptq = output_error(in, quantize_tile(in, TileMethod::gptq), h);
    MESSAGE("bits ", bits, ": output error rtn ", e_rtn, ", mse ", e_mse, ", gptq ", e_gptq);
    CHECK(e_gptq < 0.8 * e_rtn);
    CHECK(e_gptq < 0.8 * e_mse);
  }
}

TEST_CASE("gptq factor: dead inputs and an indefinite H are handled") {
  const int n = 32;
  std::vector<float> h(size_t(n) * n, 0.0f);
  for (int i = 0; i < n; ++i) h[size_t(i) * n + i] = i % 4 == 0 ? 0.0f : 1.0f;  // dead columns
  const GptqFactor f = make_gptq_factor(h.data(), n, n);
  CHECK(f.n == n);
  for (int i = 0; i < n; ++i) CHECK(f.u[size_t(i) * n + i] > 0.0);
  std::vector<float> bad(size_t(n) * n, 1.0f);  // rank one: needs damping, which the factor adds
  CHECK(make_gptq_factor(bad.data(), n, n).damp_used > 0.0);
  std::vector<float> neg(size_t(n) * n, 0.0f);
  for (int i = 0; i < n; ++i) neg[size_t(i) * n + i] = 1.0f;
  neg[1] = neg[n] = -1e9f;  // strongly indefinite even after damping
  CHECK_THROWS_WITH_AS(make_gptq_factor(neg.data(), n, n), doctest::Contains("not positive definite"), QuantizerError);
}

TEST_CASE("tile quantizers: errors name the problem") {
  std::vector<float> w(64, 0.0f);
  TileInput in;
  in.w = w.data();
  in.ldw = 64;
  in.rows = 1;
  in.cols = 64;
  in.group = 64;
  in.bits = 7;
  CHECK_THROWS_WITH_AS(quantize_tile(in, TileMethod::rtn), doctest::Contains("bitwidth 7"), QuantizerError);
  in.bits = 4;
  CHECK_THROWS_WITH_AS(quantize_tile(in, TileMethod::gptq), doctest::Contains("Hessian factor is missing"),
                       QuantizerError);
  w[3] = 1e6f;
  CHECK_THROWS_WITH_AS(quantize_tile(in, TileMethod::mse), doctest::Contains("f16"), QuantizerError);
  CHECK_THROWS_WITH_AS(parse_tile_method("awq"), doctest::Contains("expected rtn, mse or gptq"), QuantizerError);
}

}  // namespace sbits::quantizer
