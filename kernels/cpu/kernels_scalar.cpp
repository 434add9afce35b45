// The portable kernels: plain C++ for any CPU, and the reference the AVX2 path is tested
// against. Dot products keep 8 independent partial sums per output (the AVX2 lane layout), which
// also lets the compiler use whatever SIMD the baseline target has.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/attention_softmax.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/half.h"
#include "kernels/cpu/matmul_driver.h"

namespace sbits::kernels::cpu {
namespace {

constexpr int kLanes = 8;

// Element i of a row of type T; memcpy loads, so any alignment is fine.
template <WeightType T>
inline float load_elem(const uint8_t* row, int64_t i) {
  if constexpr (T == WeightType::f32) return load_f32(row + 4 * i);
  if constexpr (T == WeightType::f16) return f16_to_f32(load_u16(row + 2 * i));
  if constexpr (T == WeightType::bf16) return bf16_to_f32(load_u16(row + 2 * i));
}

inline float sum_lanes(const float* s) {
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

struct Scalar {
  template <WeightType T, int RW, int NX>
  static void tile(const uint8_t* w, size_t ldw, const float* x, int64_t ldx, float* y, int64_t ldy, int64_t k,
                   bool accumulate) {
    float s[RW][NX][kLanes] = {};
    int64_t c = 0;
    for (; c + kLanes <= k; c += kLanes) {
      float wv[RW][kLanes];
      for (int i = 0; i < RW; ++i)
        for (int l = 0; l < kLanes; ++l) wv[i][l] = load_elem<T>(w + i * ldw, c + l);
      for (int j = 0; j < NX; ++j)
        for (int i = 0; i < RW; ++i)
          for (int l = 0; l < kLanes; ++l) s[i][j][l] += wv[i][l] * x[j * ldx + c + l];
    }
    for (int i = 0; i < RW; ++i) {
      for (int j = 0; j < NX; ++j) {
        float t = sum_lanes(s[i][j]);
        for (int64_t r = c; r < k; ++r) t += load_elem<T>(w + i * ldw, r) * x[j * ldx + r];
        float& out = y[j * ldy + i];
        out = accumulate ? out + t : t;
      }
    }
  }

  static void convert(WeightType type, const void* src, float* dst, size_t n) {
    const auto* p = static_cast<const uint8_t*>(src);
    switch (type) {
      case WeightType::f32:
        for (size_t i = 0; i < n; ++i) dst[i] = load_elem<WeightType::f32>(p, int64_t(i));
        return;
      case WeightType::f16:
        for (size_t i = 0; i < n; ++i) dst[i] = load_elem<WeightType::f16>(p, int64_t(i));
        return;
      case WeightType::bf16:
        for (size_t i = 0; i < n; ++i) dst[i] = load_elem<WeightType::bf16>(p, int64_t(i));
        return;
      case WeightType::tiled: return;  // never dense rows: cpu_tiled.cpp decodes tiles
    }
  }
};

void f32_to_f16_scalar(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

template <KvType KT>
inline float kv_elem(const void* base, int64_t i) {
  if constexpr (KT == KvType::f32) return static_cast<const float*>(base)[i];
  if constexpr (KT == KvType::f16) return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
}

// The per-ISA pieces of the blocked online softmax in attention_softmax.h.
template <KvType KT>
struct ScalarAttention {
  static void scores(const float* q, const void* k, int64_t p0, int nb, int hd, float scale, float* s) {
    for (int j = 0; j < nb; ++j) {
      const int64_t base = (p0 + j) * hd;
      float part[4] = {0, 0, 0, 0};
      int d = 0;
      for (; d + 4 <= hd; d += 4)
        for (int l = 0; l < 4; ++l) part[l] += q[d + l] * kv_elem<KT>(k, base + d + l);
      float t = (part[0] + part[1]) + (part[2] + part[3]);
      for (; d < hd; ++d) t += q[d] * kv_elem<KT>(k, base + d);
      s[j] = t * scale;
    }
  }
  static void exp_shifted(float* s, int n, float m) {
    for (int j = 0; j < n; ++j) s[j] = std::exp(s[j] - m);
  }
  static void scale(float* acc, int hd, float c) {
    for (int d = 0; d < hd; ++d) acc[d] *= c;
  }
  static void accumulate(float* acc, const float* p, const void* v, int64_t p0, int nb, int hd) {
    for (int j = 0; j < nb; ++j) {
      const int64_t base = (p0 + j) * hd;
      for (int d = 0; d < hd; ++d) acc[d] += p[j] * kv_elem<KT>(v, base + d);
    }
  }
};

void attention_head_scalar(const AttentionHead& h) {
  if (h.kv_type == KvType::f16) {
    attention_head_online<ScalarAttention<KvType::f16>>(h);
  } else {
    attention_head_online<ScalarAttention<KvType::f32>>(h);
  }
}

// silu(g) = g * sigmoid(g), with sigmoid from e = exp(-|g|) <= 1 so nothing overflows for
// large |g|: sigmoid = 1/(1+e) for g >= 0, e/(1+e) for g < 0. silu(-inf) is taken as its
// limit, -0.
inline float silu(float g) {
  const float e = std::exp(-std::fabs(g));
  const float sig = g >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
  return sig == 0.0f ? -0.0f : g * sig;
}

void swiglu_scalar(const float* gate, const float* up, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = silu(gate[i]) * up[i];
}

const KernelTable kScalarTable = {
    CpuIsa::scalar, false, &matmul_rows<Scalar>, &Scalar::convert, &f32_to_f16_scalar, &attention_head_scalar,
    &swiglu_scalar,
};

}  // namespace

const KernelTable& scalar_kernels() { return kScalarTable; }

}  // namespace sbits::kernels::cpu
