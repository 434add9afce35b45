// The AVX2 + FMA + F16C kernels. Every function that uses these instructions carries the
// target attribute (SBITS_AVX2) instead of this file being built with -mavx2: that way no
// inline function from a shared header is ever compiled for AVX2 and then picked by the linker
// for the scalar path. The backend calls into here only when __builtin_cpu_supports says so.
//
// Conversions in registers: bf16 -> f32 is a zero-extension and a 16-bit left shift; f16 -> f32
// is vcvtph2ps; f32 -> f16 is vcvtps2ph with round-to-nearest-even. All are bit-identical to
// the scalar conversions in half.h (the exhaustive test checks every code).
#include "kernels/cpu/cpu_kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/attention_softmax.h"
#include "kernels/cpu/half.h"
#include "kernels/cpu/matmul_driver.h"

#define SBITS_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace sbits::kernels::cpu {
namespace {

// 8 elements of a row of type T starting at element i, as f32; unaligned loads.
template <WeightType T>
SBITS_AVX2 inline __m256 load8(const uint8_t* row, int64_t i) {
  if constexpr (T == WeightType::f32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row + 4 * i));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
    if constexpr (T == WeightType::f16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <WeightType T>
inline float load1(const uint8_t* row, int64_t i) {
  if constexpr (T == WeightType::f32) return load_f32(row + 4 * i);
  if constexpr (T == WeightType::f16) return f16_to_f32(load_u16(row + 2 * i));
  if constexpr (T == WeightType::bf16) return bf16_to_f32(load_u16(row + 2 * i));
}

SBITS_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

struct Avx2 {
  // One step of 8 columns. Register budget (16 ymm): RW * NX accumulators plus either the NX
  // x vectors (held while the RW weight vectors stream through one register) or the RW weight
  // vectors (held while x streams), whichever is smaller. Both orders do the same loads.
  template <WeightType T, int RW, int NX>
  SBITS_AVX2 static inline void step8(__m256 (&acc)[RW][NX], const uint8_t* w, size_t ldw, const float* x,
                                      int64_t ldx, int64_t c) {
    if constexpr (NX < RW) {
      __m256 xv[NX];
      for (int j = 0; j < NX; ++j) xv[j] = _mm256_loadu_ps(x + j * ldx + c);
      for (int i = 0; i < RW; ++i) {
        const __m256 wv = load8<T>(w + i * ldw, c);
        for (int j = 0; j < NX; ++j) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
      }
    } else {
      __m256 wv[RW];
      for (int i = 0; i < RW; ++i) wv[i] = load8<T>(w + i * ldw, c);
      for (int j = 0; j < NX; ++j) {
        const __m256 xv = _mm256_loadu_ps(x + j * ldx + c);
        for (int i = 0; i < RW; ++i) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
      }
    }
  }

  // 16 bf16 columns from one 256-bit load, x packed by pack_pairs16 (see cpu_kernels.h).
  template <int RW, int NX>
  SBITS_AVX2 static inline void step16_bf16(__m256 (&acc)[RW][NX], const uint8_t* w, size_t ldw, const float* x,
                                            int64_t ldx, int64_t c) {
    const __m256i high = _mm256_set1_epi32(int32_t(0xffff0000u));
    for (int i = 0; i < RW; ++i) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i * ldw + 2 * c));
      const __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
      const __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(v, high));
      for (int j = 0; j < NX; ++j) {
        acc[i][j] = _mm256_fmadd_ps(even, _mm256_loadu_ps(x + j * ldx + c), acc[i][j]);
        acc[i][j] = _mm256_fmadd_ps(odd, _mm256_loadu_ps(x + j * ldx + c + 8), acc[i][j]);
      }
    }
  }

  // y[j * ldy + i] (+)= dot(W row i, x row j); see matmul_driver.h. bf16 tiles are only used
  // by decode, which hands them x packed (KernelTable::bf16_decode_packed_x).
  template <WeightType T, int RW, int NX>
  SBITS_AVX2 static void tile(const uint8_t* w, size_t ldw, const float* x, int64_t ldx, float* y, int64_t ldy,
                              int64_t k, bool accumulate) {
    __m256 acc[RW][NX];
    for (int i = 0; i < RW; ++i)
      for (int j = 0; j < NX; ++j) acc[i][j] = _mm256_setzero_ps();
    int64_t c = 0;
    if constexpr (T == WeightType::bf16)
      for (; c + 16 <= k; c += 16) step16_bf16<RW, NX>(acc, w, ldw, x, ldx, c);
    for (; c + 8 <= k; c += 8) step8<T, RW, NX>(acc, w, ldw, x, ldx, c);
    for (int i = 0; i < RW; ++i) {
      for (int j = 0; j < NX; ++j) {
        float t = hsum(acc[i][j]);
        for (int64_t r = c; r < k; ++r) t += load1<T>(w + i * ldw, r) * x[j * ldx + r];
        float& out = y[j * ldy + i];
        out = accumulate ? out + t : t;
      }
    }
  }

  template <WeightType T>
  SBITS_AVX2 static void convert_typed(const uint8_t* p, float* dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8<T>(p, int64_t(i)));
    for (; i < n; ++i) dst[i] = load1<T>(p, int64_t(i));
  }

  static void convert(WeightType type, const void* src, float* dst, size_t n) {
    const auto* p = static_cast<const uint8_t*>(src);
    switch (type) {
      case WeightType::f32: return convert_typed<WeightType::f32>(p, dst, n);
      case WeightType::f16: return convert_typed<WeightType::f16>(p, dst, n);
      case WeightType::bf16: return convert_typed<WeightType::bf16>(p, dst, n);
      case WeightType::tiled: return;  // never dense rows: cpu_tiled.cpp decodes tiles
    }
  }
};

SBITS_AVX2 void f32_to_f16_avx2(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

// exp(x) for x in [-87.3, 88] to about 2 ulp (Cephes expf: x = n ln2 + r with |r| <= ln2/2,
// a degree-5 polynomial for exp(r), 2^n built in the exponent bits). Below -87.3 the result is
// 0 instead of a denormal: callers only use it where such values are negligible next to 1.
SBITS_AVX2 inline __m256 exp256(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.0f);  // keeps 2^n finite (n <= 127)
  const __m256 lo = _mm256_set1_ps(-87.3365478515625f);
  const __m256 too_small = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(too_small, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

// silu(g) * u with sigmoid from e = exp(-|g|) (no overflow; see kernels_scalar.cpp). g below
// -87.3 gives -0: the true value is a denormal below 1e-36.
SBITS_AVX2 void swiglu_avx2(const float* gate, const float* up, float* out, size_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp256(_mm256_or_ps(g, sign));  // exp(-|g|)
    const __m256 r = _mm256_div_ps(one, _mm256_add_ps(one, e));
    const __m256 neg = _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 sig = _mm256_blendv_ps(r, _mm256_mul_ps(e, r), neg);
    __m256 s = _mm256_mul_ps(g, sig);
    s = _mm256_blendv_ps(s, sign, _mm256_cmp_ps(g, _mm256_set1_ps(-87.0f), _CMP_LT_OQ));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) {
    const float g = gate[i];
    const float e = std::exp(-std::fabs(g));
    const float sig = g >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    out[i] = (sig == 0.0f ? -0.0f : g * sig) * up[i];
  }
}

template <KvType KT>
SBITS_AVX2 inline __m256 kv_load8(const void* base, int64_t i) {
  if constexpr (KT == KvType::f32) return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i)));
}

template <KvType KT>
inline float kv_load1(const void* base, int64_t i) {
  if constexpr (KT == KvType::f32) return static_cast<const float*>(base)[i];
  return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
}

// The block pieces of attention_softmax.h. Scores take four positions at a time (four
// independent FMA chains); the value accumulation keeps 32 output floats in registers while it
// walks the block's positions.
template <KvType KT>
struct Avx2Attention {
  template <int P>
  SBITS_AVX2 static void dots(const float* q, const void* k, int64_t row, int hd, float scale, float* s) {
    __m256 acc[P];
    for (int p = 0; p < P; ++p) acc[p] = _mm256_setzero_ps();
    int d = 0;
    for (; d + 8 <= hd; d += 8) {
      const __m256 qv = _mm256_loadu_ps(q + d);
      for (int p = 0; p < P; ++p) acc[p] = _mm256_fmadd_ps(qv, kv_load8<KT>(k, (row + p) * hd + d), acc[p]);
    }
    for (int p = 0; p < P; ++p) {
      float t = hsum(acc[p]);
      for (int r = d; r < hd; ++r) t += q[r] * kv_load1<KT>(k, (row + p) * hd + r);
      s[p] = t * scale;
    }
  }
  SBITS_AVX2 static void scores(const float* q, const void* k, int64_t p0, int nb, int hd, float scale, float* s) {
    int j = 0;
    for (; j + 4 <= nb; j += 4) dots<4>(q, k, p0 + j, hd, scale, s + j);
    for (; j < nb; ++j) dots<1>(q, k, p0 + j, hd, scale, s + j);
  }
  SBITS_AVX2 static void exp_shifted(float* s, int n, float m) {
    const __m256 mv = _mm256_set1_ps(m);
    int j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv)));
    for (; j < n; ++j) s[j] = std::exp(s[j] - m);
  }
  SBITS_AVX2 static void scale(float* acc, int hd, float c) {
    const __m256 cv = _mm256_set1_ps(c);
    int d = 0;
    for (; d + 8 <= hd; d += 8) _mm256_storeu_ps(acc + d, _mm256_mul_ps(_mm256_loadu_ps(acc + d), cv));
    for (; d < hd; ++d) acc[d] *= c;
  }
  template <int V>
  SBITS_AVX2 static void accumulate_cols(float* acc, const float* p, const void* v, int64_t p0, int nb, int hd,
                                         int d) {
    __m256 a[V];
    for (int u = 0; u < V; ++u) a[u] = _mm256_loadu_ps(acc + d + 8 * u);
    for (int j = 0; j < nb; ++j) {
      const __m256 pv = _mm256_set1_ps(p[j]);
      for (int u = 0; u < V; ++u) a[u] = _mm256_fmadd_ps(pv, kv_load8<KT>(v, (p0 + j) * hd + d + 8 * u), a[u]);
    }
    for (int u = 0; u < V; ++u) _mm256_storeu_ps(acc + d + 8 * u, a[u]);
  }
  SBITS_AVX2 static void accumulate(float* acc, const float* p, const void* v, int64_t p0, int nb, int hd) {
    int d = 0;
    for (; d + 32 <= hd; d += 32) accumulate_cols<4>(acc, p, v, p0, nb, hd, d);
    for (; d + 8 <= hd; d += 8) accumulate_cols<1>(acc, p, v, p0, nb, hd, d);
    for (; d < hd; ++d)
      for (int j = 0; j < nb; ++j) acc[d] += p[j] * kv_load1<KT>(v, (p0 + j) * hd + d);
  }
};

void attention_head_avx2(const AttentionHead& h) {
  if (h.kv_type == KvType::f16) {
    attention_head_online<Avx2Attention<KvType::f16>>(h);
  } else {
    attention_head_online<Avx2Attention<KvType::f32>>(h);
  }
}

const KernelTable kAvx2Table = {
    CpuIsa::avx2, true, &matmul_rows<Avx2>, &Avx2::convert, &f32_to_f16_avx2, &attention_head_avx2, &swiglu_avx2,
};

}  // namespace

const KernelTable* avx2_kernels() { return &kAvx2Table; }

}  // namespace sbits::kernels::cpu

#else  // not x86

namespace sbits::kernels::cpu {
const KernelTable* avx2_kernels() { return nullptr; }
}  // namespace sbits::kernels::cpu

#endif
