// Per-tile quantizers: rtn, the weighted-MSE range search, and GPTQ error feedback.
#include "quantizer/tile_quant.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "formats/dtype_convert.h"
#include "kernels/quant/hd.h"

namespace sbits::quantizer {
namespace {

constexpr float kF16Max = 65504.0f;
constexpr int kMaxGroup = 4096;  // G <= C <= 4096 (formats/tiled_layout.h)

inline float code_max(int bits) { return float((1u << bits) - 1u); }

void check_bits(int bits) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8) {
    throw QuantizerError("tile quantizer: bitwidth " + std::to_string(bits) + " is not one of 2, 3, 4, 5, 6, 8");
  }
}

// {scale, min} rounded to f16, or nullopt-like `ok = false` when they do not fit f16.
bool make_fit(float scale, float min, GroupFit& f) {
  if (!(scale >= 0.0f) || !(std::fabs(min) <= kF16Max) || !(scale <= kF16Max)) return false;
  f.scale_f16 = f32_to_f16(scale);
  f.min_f16 = f32_to_f16(min);
  f.scale = kernels::quant::half_to_float(f.scale_f16);
  f.min = kernels::quant::half_to_float(f.min_f16);
  return std::isfinite(f.scale) && std::isfinite(f.min);
}

// Fast candidate error (float): codes by round-half-up after clamping, which is the nearest
// grid point except at exact ties. Eight independent partial sums let the compiler vectorize
// the loop (a single float accumulator would have to stay in order). h has n entries.
float candidate_error(const float* w, const float* h, int n, float maxq, float s, float m) {
  const float inv = s > 0.0f ? 1.0f / s : 0.0f;
  float acc[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) {
      const float t = std::min(std::max((w[i + l] - m) * inv, 0.0f), maxq);
      const float d = w[i + l] - (float(int(t + 0.5f)) * s + m);
      acc[l] += h[i + l] * d * d;
    }
  }
  for (; i < n; ++i) {
    const float t = std::min(std::max((w[i] - m) * inv, 0.0f), maxq);
    const float d = w[i] - (float(int(t + 0.5f)) * s + m);
    acc[0] += h[i] * d * d;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Weighted least-squares {scale, min} for fixed codes q: minimises sum h (s q + m - w)^2.
bool refit(const float* w, const float* h, const uint8_t* q, int n, GroupFit& out) {
  double shh = 0, sq = 0, sqq = 0, sw = 0, sqw = 0;
  for (int i = 0; i < n; ++i) {
    const double hi = h ? h[i] : 1.0, qi = q[i];
    shh += hi;
    sq += hi * qi;
    sqq += hi * qi * qi;
    sw += hi * w[i];
    sqw += hi * qi * w[i];
  }
  const double det = sqq * shh - sq * sq;
  if (!(det > 1e-12 * sqq * shh)) return false;
  const double s = (sqw * shh - sq * sw) / det;
  const double m = (sqq * sw - sq * sqw) / det;
  if (!(s > 0.0)) return false;
  return make_fit(float(s), float(m), out);
}

void minmax(const float* w, int n, float& mn, float& mx) {
  mn = w[0];
  mx = w[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, w[i]);
    mx = std::max(mx, w[i]);
  }
  if (!std::isfinite(mn) || !std::isfinite(mx)) throw QuantizerError("tile quantizer: non-finite weight");
}

}  // namespace

const char* tile_method_name(TileMethod m) {
  switch (m) {
    case TileMethod::rtn: return "rtn";
    case TileMethod::mse: return "mse";
    case TileMethod::gptq: return "gptq";
  }
  return "?";
}

TileMethod parse_tile_method(const std::string& name) {
  if (name == "rtn") return TileMethod::rtn;
  if (name == "mse") return TileMethod::mse;
  if (name == "gptq") return TileMethod::gptq;
  throw QuantizerError("unknown per-tile quantizer \"" + name + "\" (expected rtn, mse or gptq)");
}

double quantize_group(const float* w, const float* h, int n, int bits, const GroupFit& fit, uint8_t* q) {
  const float maxq = code_max(bits);
  double err = 0.0;
  for (int i = 0; i < n; ++i) {
    float t = fit.scale > 0.0f ? (w[i] - fit.min) / fit.scale : 0.0f;
    t = std::min(std::max(std::nearbyint(t), 0.0f), maxq);
    q[i] = uint8_t(t);
    const double d = double(w[i]) - double(fmaf(t, fit.scale, fit.min));
    err += (h ? h[i] : 1.0) * d * d;
  }
  return err;
}

GroupFit fit_group_rtn(const float* w, int n, int bits) {
  check_bits(bits);
  float mn, mx;
  minmax(w, n, mn, mx);
  GroupFit f;
  // Round the min first, then stretch the scale so that the max stays on the grid's top code.
  if (!make_fit(1.0f, mn, f)) throw QuantizerError("tile quantizer: weight " + std::to_string(mn) + " exceeds f16");
  const float scale = std::max(mx - f.min, 0.0f) / code_max(bits);
  if (!make_fit(scale, f.min, f)) {
    throw QuantizerError("tile quantizer: group range [" + std::to_string(mn) + ", " + std::to_string(mx) +
                         "] does not fit f16 scales");
  }
  return f;
}

GroupFit fit_group_mse(const float* w, const float* h, int n, int bits, const MseOptions& opt) {
  const GroupFit rtn = fit_group_rtn(w, n, bits);
  float mn, mx;
  minmax(w, n, mn, mx);
  const float range = mx - mn, maxq = code_max(bits);
  if (!(range > 0.0f)) return rtn;
  if (n > kMaxGroup) throw QuantizerError("tile quantizer: group of " + std::to_string(n) + " weights (at most 4096)");
  static const std::vector<float> ones(kMaxGroup, 1.0f);
  const float* hw = h ? h : ones.data();  // the search always weights; h = 1 without calibration
  GroupFit best = rtn;
  float best_err = candidate_error(w, hw, n, maxq, rtn.scale, rtn.min);
  // Candidates: the range shrunk by alpha, kept at the bottom, centre or top of [min, max].
  const int steps = std::max(opt.shrink_steps, 1);
  for (int k = 1; k <= steps; ++k) {
    const float alpha = 1.0f - float(k) * (1.0f - opt.min_shrink) / float(steps);
    for (float beta : {0.0f, 0.5f, 1.0f}) {
      GroupFit f;
      if (!make_fit(alpha * range / maxq, mn + beta * (1.0f - alpha) * range, f)) continue;
      const float e = candidate_error(w, hw, n, maxq, f.scale, f.min);
      if (e < best_err) {
        best_err = e;
        best = f;
      }
    }
  }
  // Refit scale and min to the winner's codes (least squares), keep it while it helps.
  uint8_t q[kMaxGroup];
  for (int round = 0; round < opt.refit_rounds; ++round) {
    quantize_group(w, h, n, bits, best, q);
    GroupFit f;
    if (!refit(w, h, q, n, f)) break;
    const float e = candidate_error(w, hw, n, maxq, f.scale, f.min);
    if (!(e < best_err)) break;
    best_err = e;
    best = f;
  }
  // The float search can misjudge near-ties; the exact error decides against rtn, so that mse
  // is never worse than rtn in the weighted error.
  if (quantize_group(w, h, n, bits, rtn, q) <= quantize_group(w, h, n, bits, best, q)) return rtn;
  return best;
}

TileCodes quantize_tile(const TileInput& in, TileMethod method, const MseOptions& mse, const GptqOptions& gptq) {
  check_bits(in.bits);
  if (in.rows < 1 || in.cols < 1 || in.group < 1 || in.ldw < in.cols || !in.w) {
    throw QuantizerError("tile quantizer: bad tile " + std::to_string(in.rows) + " x " + std::to_string(in.cols) +
                         " (ldw " + std::to_string(in.ldw) + ", group " + std::to_string(in.group) + ")");
  }
  if (method == TileMethod::gptq) return detail::quantize_tile_gptq(in, mse, gptq);
  TileCodes c;
  c.rows = in.rows;
  c.cols = in.cols;
  c.group = in.group;
  c.groups = (in.cols + in.group - 1) / in.group;
  c.q.resize(size_t(in.rows) * size_t(in.cols));
  c.scale.resize(size_t(in.rows) * size_t(c.groups));
  c.min.resize(c.scale.size());
  for (int r = 0; r < in.rows; ++r) {
    for (int g = 0; g < c.groups; ++g) {
      const int c0 = g * in.group, n = std::min(in.group, in.cols - c0);
      const float* w = in.w + size_t(r) * size_t(in.ldw) + size_t(c0);
      const float* h = in.h ? in.h + c0 : nullptr;
      const GroupFit f = method == TileMethod::rtn ? fit_group_rtn(w, n, in.bits) : fit_group_mse(w, h, n, in.bits, mse);
      quantize_group(w, h, n, in.bits, f, c.q.data() + size_t(r) * size_t(in.cols) + size_t(c0));
      c.scale[size_t(r) * size_t(c.groups) + size_t(g)] = f.scale_f16;
      c.min[size_t(r) * size_t(c.groups) + size_t(g)] = f.min_f16;
    }
  }
  return c;
}

double weighted_error(const TileInput& in, const TileCodes& codes) {
  double err = 0.0;
  for (int r = 0; r < in.rows; ++r) {
    for (int c = 0; c < in.cols; ++c) {
      const double d = double(in.w[size_t(r) * size_t(in.ldw) + size_t(c)]) - double(codes.value(r, c));
      err += (in.h ? double(in.h[c]) : 1.0) * d * d;
    }
  }
  return err;
}

float TileCodes::value(int r, int c) const {
  const size_t gi = size_t(r) * size_t(groups) + size_t(c / group);
  return fmaf(float(q[size_t(r) * size_t(cols) + size_t(c)]), kernels::quant::half_to_float(scale[gi]),
              kernels::quant::half_to_float(min[gi]));
}

}  // namespace sbits::quantizer
