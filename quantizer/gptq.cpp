// GPTQ inside one tile: the Cholesky factor of the damped inverse Hessian, and the column-by-
// column quantization with error feedback and lazy block updates.
#include <algorithm>
#include <cmath>
#include <string>

#include "quantizer/tile_quant.h"

namespace sbits::quantizer {
namespace {

// In-place lower Cholesky of the n x n matrix a (row-major); false if not positive definite.
bool cholesky_lower(std::vector<double>& a, int n) {
  for (int j = 0; j < n; ++j) {
    double d = a[size_t(j) * n + j];
    for (int k = 0; k < j; ++k) d -= a[size_t(j) * n + k] * a[size_t(j) * n + k];
    if (!(d > 0.0) || !std::isfinite(d)) return false;
    d = std::sqrt(d);
    a[size_t(j) * n + j] = d;
    for (int i = j + 1; i < n; ++i) {
      double s = a[size_t(i) * n + j];
      for (int k = 0; k < j; ++k) s -= a[size_t(i) * n + k] * a[size_t(j) * n + k];
      a[size_t(i) * n + j] = s / d;
    }
    for (int i = 0; i < j; ++i) a[size_t(i) * n + j] = 0.0;  // clear the upper triangle
  }
  return true;
}

// H^-1 from its lower Cholesky factor L: H^-1 = L^-T L^-1.
std::vector<double> inverse_from_cholesky(const std::vector<double>& l, int n) {
  std::vector<double> li(size_t(n) * n, 0.0);  // L^-1, lower
  for (int j = 0; j < n; ++j) {
    li[size_t(j) * n + j] = 1.0 / l[size_t(j) * n + j];
    for (int i = j + 1; i < n; ++i) {
      double s = 0.0;
      for (int k = j; k < i; ++k) s += l[size_t(i) * n + k] * li[size_t(k) * n + j];
      li[size_t(i) * n + j] = -s / l[size_t(i) * n + i];
    }
  }
  std::vector<double> inv(size_t(n) * n);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j <= i; ++j) {
      double s = 0.0;
      for (int k = i; k < n; ++k) s += li[size_t(k) * n + i] * li[size_t(k) * n + j];
      inv[size_t(i) * n + j] = s;
      inv[size_t(j) * n + i] = s;
    }
  }
  return inv;
}

}  // namespace

GptqFactor make_gptq_factor(const float* h, int64_t ldh, int n, const GptqOptions& opt) {
  if (n < 1 || !h || ldh < n) throw QuantizerError("gptq: bad Hessian block of " + std::to_string(n) + " columns");
  std::vector<double> a(size_t(n) * n);
  double mean = 0.0;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) a[size_t(i) * n + j] = h[size_t(i) * size_t(ldh) + size_t(j)];
    if (!(a[size_t(i) * n + i] > 0.0)) a[size_t(i) * n + i] = 1.0;  // a dead input: any weight will do
    mean += a[size_t(i) * n + i];
  }
  mean /= n;
  double damp = opt.damp;
  for (int attempt = 0; attempt < 8; ++attempt, damp *= 10.0) {
    std::vector<double> b = a;
    for (int i = 0; i < n; ++i) b[size_t(i) * n + i] += damp * mean;
    if (!cholesky_lower(b, n)) continue;
    std::vector<double> inv = inverse_from_cholesky(b, n);
    if (!cholesky_lower(inv, n)) continue;
    GptqFactor f;
    f.n = n;
    f.damp_used = damp;
    f.u.assign(size_t(n) * n, 0.0);
    for (int i = 0; i < n; ++i)
      for (int j = i; j < n; ++j) f.u[size_t(i) * n + j] = inv[size_t(j) * n + i];  // U = L^T
    return f;
  }
  throw QuantizerError("gptq: the Hessian block of " + std::to_string(n) +
                       " columns is not positive definite even with damping " + std::to_string(damp / 10.0) +
                       " x mean(diag); check the calibration statistics");
}

namespace detail {

TileCodes quantize_tile_gptq(const TileInput& in, const MseOptions& mse, const GptqOptions& opt) {
  if (!in.gptq || in.gptq->n != in.cols) {
    throw QuantizerError("gptq: the tile has " + std::to_string(in.cols) + " columns, the Hessian factor " +
                         (in.gptq ? std::to_string(in.gptq->n) : std::string("is missing")));
  }
  const int rows = in.rows, cols = in.cols, G = in.group;
  const int block = std::max(1, std::min(opt.block, G));
  if (G % block != 0) throw QuantizerError("gptq: block " + std::to_string(block) + " must divide group " + std::to_string(G));
  const std::vector<double>& u = in.gptq->u;
  TileCodes c;
  c.rows = rows;
  c.cols = cols;
  c.group = G;
  c.groups = (cols + G - 1) / G;
  c.q.resize(size_t(rows) * cols);
  c.scale.resize(size_t(rows) * c.groups);
  c.min.resize(c.scale.size());
  std::vector<float> w(size_t(rows) * cols), err(size_t(rows) * block);
  for (int r = 0; r < rows; ++r) std::copy_n(in.w + size_t(r) * size_t(in.ldw), cols, w.begin() + size_t(r) * cols);
  std::vector<GroupFit> fit(rows);
  const float maxq = float((1u << in.bits) - 1u);
  for (int b0 = 0; b0 < cols; b0 += block) {
    const int b1 = std::min(cols, b0 + block);
    for (int i = b0; i < b1; ++i) {
      if (i % G == 0) {  // a group starts on a block boundary, so w is fully updated here
        const int g = i / G, n = std::min(G, cols - i);
        for (int r = 0; r < rows; ++r) {
          fit[r] = fit_group_mse(&w[size_t(r) * cols + i], in.h ? in.h + i : nullptr, n, in.bits, mse);
          c.scale[size_t(r) * c.groups + g] = fit[r].scale_f16;
          c.min[size_t(r) * c.groups + g] = fit[r].min_f16;
        }
      }
      const double d = u[size_t(i) * cols + i];
      for (int r = 0; r < rows; ++r) {
        float* wr = &w[size_t(r) * cols];
        const GroupFit& f = fit[r];
        float t = f.scale > 0.0f ? (wr[i] - f.min) / f.scale : 0.0f;
        t = std::min(std::max(std::nearbyint(t), 0.0f), maxq);
        c.q[size_t(r) * cols + i] = uint8_t(t);
        const float e = float((double(wr[i]) - double(fmaf(t, f.scale, f.min))) / d);
        err[size_t(r) * block + (i - b0)] = e;
        for (int j = i + 1; j < b1; ++j) wr[j] -= e * float(u[size_t(i) * cols + j]);
      }
    }
    // Lazy batch update: the block's errors reach the remaining columns in one pass.
    for (int r = 0; r < rows; ++r) {
      float* wr = &w[size_t(r) * cols];
      for (int k = 0; k < b1 - b0; ++k) {
        const float e = err[size_t(r) * block + k];
        if (e == 0.0f) continue;
        const double* ui = &u[size_t(b0 + k) * cols];
        for (int j = b1; j < cols; ++j) wr[j] -= e * float(ui[j]);
      }
    }
  }
  return c;
}

}  // namespace detail
}  // namespace sbits::quantizer
