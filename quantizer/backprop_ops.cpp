#include "quantizer/backprop_ops.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/dtype_convert.h"
#include "quantizer/parallel.h"
#include "quantizer/tile_quant.h"

namespace sbits::quantizer::bp {

void rmsnorm_forward(const float* x, const float* g, int n, int dim, float eps, float* y, float* rs) {
  for (int t = 0; t < n; ++t) {
    const float* xr = x + size_t(t) * dim;
    // Sum of squares in double, as the engine's CPU rmsnorm does.
    double ss = 0;
    for (int j = 0; j < dim; ++j) ss += double(xr[j]) * double(xr[j]);
    const auto r = float(1.0 / std::sqrt(ss / dim + double(eps)));
    rs[t] = r;
    float* yr = y + size_t(t) * dim;
    for (int j = 0; j < dim; ++j) yr[j] = xr[j] * r * g[j];
  }
}

void rmsnorm_backward(const float* x, const float* g, const float* rs, const float* dy, int n, int dim, float* dx,
                      bool accumulate) {
  for (int t = 0; t < n; ++t) {
    const float* xr = x + size_t(t) * dim;
    const float* dyr = dy + size_t(t) * dim;
    float* dxr = dx + size_t(t) * dim;
    double ux = 0;
    for (int j = 0; j < dim; ++j) ux += double(dyr[j]) * double(g[j]) * double(xr[j]);
    const float r = rs[t];
    const auto k = float(double(r) * r * r * ux / dim);
    if (accumulate)
      for (int j = 0; j < dim; ++j) dxr[j] += r * dyr[j] * g[j] - k * xr[j];
    else
      for (int j = 0; j < dim; ++j) dxr[j] = r * dyr[j] * g[j] - k * xr[j];
  }
}

void rope(float* x, int n, int heads, int head_dim, double theta, RopeConvention conv, bool inverse) {
  const int half = head_dim / 2;
  std::vector<double> freq(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) freq[size_t(i)] = std::pow(theta, -2.0 * i / head_dim);
  const int stride_a = conv == RopeConvention::neox ? 1 : 2;
  const int offset_b = conv == RopeConvention::neox ? half : 1;
  std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  const size_t width = size_t(heads) * head_dim;
  for (int t = 0; t < n; ++t) {
    for (int i = 0; i < half; ++i) {
      const double angle = double(t) * freq[size_t(i)];
      cs[size_t(i)] = float(std::cos(angle));
      // The inverse rotation uses the same rounded cos and -sin, so it is the exact transpose.
      sn[size_t(i)] = inverse ? -float(std::sin(angle)) : float(std::sin(angle));
    }
    for (int h = 0; h < heads; ++h) {
      float* v = x + size_t(t) * width + size_t(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        float& a = v[i * stride_a];
        float& b = v[i * stride_a + offset_b];
        const float a0 = a, b0 = b;
        a = a0 * cs[size_t(i)] - b0 * sn[size_t(i)];
        b = a0 * sn[size_t(i)] + b0 * cs[size_t(i)];
      }
    }
  }
}

namespace {

// kT[d * n + j] = k[j, head g, d]: keys of one KV head transposed, so that the scores of one
// query against all earlier keys are an axpy per dimension over contiguous memory.
void transpose_head(const float* k, int n, int kv_width, int g, int hd, float* kt) {
  for (int j = 0; j < n; ++j) {
    const float* kr = k + size_t(j) * kv_width + size_t(g) * hd;
    for (int d = 0; d < hd; ++d) kt[size_t(d) * n + j] = kr[d];
  }
}

// s[0..t] = scale * (q_t . k_j) for j <= t.
void scores(const float* qt, const float* kt, int n, int t, int hd, float scale, float* s) {
  std::fill(s, s + t + 1, 0.0f);
  for (int d = 0; d < hd; ++d) {
    const float qd = qt[d] * scale;
    const float* kd = kt + size_t(d) * n;
    for (int j = 0; j <= t; ++j) s[j] += qd * kd[j];
  }
}

}  // namespace

void attention_forward(const float* q, const float* k, const float* v, int n, const AttnShape& s, float* out,
                       float* lse, int threads) {
  const int hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
  const int qw = s.n_heads * hd, kvw = s.n_kv_heads * hd;
  const float scale = 1.0f / std::sqrt(float(hd));
  parallel_for(s.n_heads, threads, [&](int64_t h64) {
    const int h = int(h64), g = h / group;
    std::vector<float> kt(size_t(hd) * n), sc(static_cast<size_t>(n));
    transpose_head(k, n, kvw, g, hd, kt.data());
    for (int t = 0; t < n; ++t) {
      scores(q + size_t(t) * qw + size_t(h) * hd, kt.data(), n, t, hd, scale, sc.data());
      const float mx = *std::max_element(sc.begin(), sc.begin() + t + 1);
      double sum = 0;
      for (int j = 0; j <= t; ++j) {
        sc[size_t(j)] = std::exp(sc[size_t(j)] - mx);
        sum += sc[size_t(j)];
      }
      lse[size_t(h) * n + t] = mx + float(std::log(sum));
      const auto inv = float(1.0 / sum);
      float* o = out + size_t(t) * qw + size_t(h) * hd;
      std::fill(o, o + hd, 0.0f);
      for (int j = 0; j <= t; ++j) {
        const float p = sc[size_t(j)] * inv;
        const float* vr = v + size_t(j) * kvw + size_t(g) * hd;
        for (int d = 0; d < hd; ++d) o[d] += p * vr[d];
      }
    }
  });
}

void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                        const float* dout, int n, const AttnShape& s, float* dq, float* dk, float* dv, int threads) {
  const int hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
  const int qw = s.n_heads * hd, kvw = s.n_kv_heads * hd;
  const float scale = 1.0f / std::sqrt(float(hd));
  // dk, dv per query head first (heads of one group run on different threads), summed after.
  const size_t per_head = size_t(n) * hd;
  std::vector<float> dk_h(per_head * s.n_heads, 0.0f), dv_h(per_head * s.n_heads, 0.0f);
  parallel_for(s.n_heads, threads, [&](int64_t h64) {
    const int h = int(h64), g = h / group;
    std::vector<float> kt(per_head), vt(per_head), p(static_cast<size_t>(n)), dp(static_cast<size_t>(n));
    transpose_head(k, n, kvw, g, hd, kt.data());
    transpose_head(v, n, kvw, g, hd, vt.data());
    float* dkh = dk_h.data() + per_head * h;
    float* dvh = dv_h.data() + per_head * h;
    for (int t = 0; t < n; ++t) {
      const float* qt = q + size_t(t) * qw + size_t(h) * hd;
      const float* dot = dout + size_t(t) * qw + size_t(h) * hd;
      const float* ot = out + size_t(t) * qw + size_t(h) * hd;
      scores(qt, kt.data(), n, t, hd, scale, p.data());
      const float l = lse[size_t(h) * n + t];
      for (int j = 0; j <= t; ++j) p[size_t(j)] = std::exp(p[size_t(j)] - l);
      // dP_j = dout_t . v_j; D = dout_t . out_t = sum_j P_j dP_j (softmax backward).
      std::fill(dp.begin(), dp.begin() + t + 1, 0.0f);
      float dd = 0;
      for (int d = 0; d < hd; ++d) {
        const float od = dot[d];
        dd += od * ot[d];
        const float* vd = vt.data() + size_t(d) * n;
        for (int j = 0; j <= t; ++j) dp[size_t(j)] += od * vd[j];
      }
      float* dqt = dq + size_t(t) * qw + size_t(h) * hd;
      std::fill(dqt, dqt + hd, 0.0f);
      for (int j = 0; j <= t; ++j) {
        const float pj = p[size_t(j)];
        const float ds = pj * (dp[size_t(j)] - dd) * scale;
        const float* kj = k + size_t(j) * kvw + size_t(g) * hd;
        float* dkj = dkh + size_t(j) * hd;
        float* dvj = dvh + size_t(j) * hd;
        for (int d = 0; d < hd; ++d) {
          dqt[d] += ds * kj[d];
          dkj[d] += ds * qt[d];
          dvj[d] += pj * dot[d];
        }
      }
    }
  });
  for (int j = 0; j < n; ++j)
    for (int g = 0; g < s.n_kv_heads; ++g) {
      float* dkj = dk + size_t(j) * kvw + size_t(g) * hd;
      float* dvj = dv + size_t(j) * kvw + size_t(g) * hd;
      std::fill(dkj, dkj + hd, 0.0f);
      std::fill(dvj, dvj + hd, 0.0f);
      for (int h = g * group; h < (g + 1) * group; ++h) {
        const float* a = dk_h.data() + per_head * h + size_t(j) * hd;
        const float* b = dv_h.data() + per_head * h + size_t(j) * hd;
        for (int d = 0; d < hd; ++d) {
          dkj[d] += a[d];
          dvj[d] += b[d];
        }
      }
    }
}

void swiglu_forward(const float* gate, const float* up, size_t count, float* m) {
  for (size_t i = 0; i < count; ++i) m[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void swiglu_backward(const float* gate, const float* up, const float* dm, size_t count, float* dgate, float* dup) {
  for (size_t i = 0; i < count; ++i) {
    const float x = gate[i];
    const float sig = 1.0f / (1.0f + std::exp(-x));
    const float silu = x * sig;
    dup[i] = dm[i] * silu;
    // silu'(x) = sig * (1 + x * (1 - sig)).
    dgate[i] = dm[i] * up[i] * sig * (1.0f + x * (1.0f - sig));
  }
}

namespace {

constexpr int64_t kDwBlock = 32;  // rows of W converted at once: 32 x cols floats, L2-resident

// yt[j] += sum_{kk < m} a[kk] * b[kk * cols + j], four rows of b per pass so that yt is loaded
// and stored once per four multiply-adds. Inlined into an AVX2 clone and a baseline clone.
__attribute__((always_inline)) inline void dw_rows(float* yt, const float* a, const float* b, int64_t m,
                                                   int64_t cols) {
  int64_t kk = 0;
  for (; kk + 4 <= m; kk += 4) {
    const float a0 = a[kk], a1 = a[kk + 1], a2 = a[kk + 2], a3 = a[kk + 3];
    const float *b0 = b + kk * cols, *b1 = b0 + cols, *b2 = b1 + cols, *b3 = b2 + cols;
    for (int64_t j = 0; j < cols; ++j) yt[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
  }
  for (; kk < m; ++kk) {
    const float a0 = a[kk];
    const float* b0 = b + kk * cols;
    for (int64_t j = 0; j < cols; ++j) yt[j] += a0 * b0[j];
  }
}

using DwFn = void (*)(float*, const float*, const float*, int64_t, int64_t);
void dw_base(float* yt, const float* a, const float* b, int64_t m, int64_t cols) { dw_rows(yt, a, b, m, cols); }
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void dw_avx2(float* yt, const float* a, const float* b, int64_t m, int64_t cols) {
  dw_rows(yt, a, b, m, cols);
}
DwFn pick_dw() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? dw_avx2 : dw_base; }
#else
DwFn pick_dw() { return dw_base; }
#endif

}  // namespace

void matmul_dw(const uint8_t* w, Layout layout, int64_t rows, int64_t cols, const float* d, int n, float* y,
               int threads) {
  static const DwFn fn = pick_dw();
  const size_t eb = layout == Layout::f32 ? 4 : 2;
  const int parts = int(std::clamp<int64_t>(threads, 1, (rows + kDwBlock - 1) / kDwBlock));
  std::vector<std::vector<float>> acc(size_t(parts), std::vector<float>(size_t(n) * size_t(cols), 0.0f));
  parallel_for(parts, parts, [&](int64_t p) {
    const int64_t k_begin = (rows * p / parts) / kDwBlock * kDwBlock;
    const int64_t k_end = p + 1 == parts ? rows : (rows * (p + 1) / parts) / kDwBlock * kDwBlock;
    std::vector<float> buf(static_cast<size_t>(kDwBlock * cols)), a(static_cast<size_t>(kDwBlock));
    float* yp = acc[size_t(p)].data();
    for (int64_t k0 = k_begin; k0 < k_end; k0 += kDwBlock) {
      const int64_t m = std::min(kDwBlock, k_end - k0);
      convert_floats(layout, Layout::f32, w + size_t(k0 * cols) * eb, reinterpret_cast<uint8_t*>(buf.data()),
                     uint64_t(m * cols), nullptr);
      for (int t = 0; t < n; ++t) {
        std::copy(d + size_t(t) * size_t(rows) + size_t(k0), d + size_t(t) * size_t(rows) + size_t(k0 + m), a.begin());
        fn(yp + size_t(t) * size_t(cols), a.data(), buf.data(), m, cols);
      }
    }
  });
  std::copy(acc[0].begin(), acc[0].end(), y);
  for (int p = 1; p < parts; ++p)
    for (size_t i = 0; i < acc[size_t(p)].size(); ++i) y[i] += acc[size_t(p)][i];
}

namespace {

// splitmix64: a well-mixed 64-bit hash, so that neighbouring keys give independent draws.
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Index i with cumsum(p)[i] >= u * sum(p); p unnormalised (the softmax numerators).
int32_t draw(const float* p, int vocab, double total, uint64_t key) {
  const double u = double(mix64(key) >> 11) * 0x1.0p-53 * total;
  double c = 0;
  for (int i = 0; i < vocab; ++i) {
    c += p[i];
    if (c >= u) return i;
  }
  return vocab - 1;
}

}  // namespace

double cross_entropy(float* logits, const int32_t* targets, int n, int vocab, bool grad, float* lse,
                     float* target_logit, int64_t sample_key) {
  double total = 0;
  for (int t = 0; t < n; ++t) {
    float* z = logits + size_t(t) * vocab;
    const int32_t y = targets[t];
    if (y < 0 || y >= vocab)
      throw QuantizerError(fmt::format("cross_entropy: target {} at row {} is outside the vocabulary [0, {})", y, t,
                                       vocab));
    const float mx = *std::max_element(z, z + vocab);
    double sum = 0;
    for (int i = 0; i < vocab; ++i) sum += std::exp(z[i] - mx);
    const double l = double(mx) + std::log(sum);
    total += l - double(z[y]);
    if (lse) lse[t] = float(l);
    if (target_logit) target_logit[t] = z[y];
    if (grad) {
      const auto lf = float(l);
      double psum = 0;
      for (int i = 0; i < vocab; ++i) {
        z[i] = std::exp(z[i] - lf);
        psum += z[i];
      }
      z[sample_key >= 0 ? draw(z, vocab, psum, uint64_t(sample_key) + uint64_t(t)) : y] -= 1.0f;
    }
  }
  return total;
}

}  // namespace sbits::quantizer::bp
