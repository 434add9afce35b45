// AVX2 + FMA + F16C tiled kernels. Like kernels_avx2.cpp, every function using these
// instructions carries the target attribute instead of the file being built with -mavx2, and
// the backend calls in only when the CPU has them.
//
// Decoding 8 codes: the plane word(s) holding them are broadcast to the 8 lanes, one vpsrlvd
// with per-lane shift counts (the interleaved positions of codec_plane.h) and one vpand give
// the codes; a second plane adds a shift and an or. Then vcvtdq2ps and one FMA with the
// group's scale and min give the weights, exactly as quant::dequantize_tile_row computes them.
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/tiled_kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

#define SBITS_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace sbits::kernels::cpu {
namespace {

using quant::kUnitCodes;
using quant::TileView;

// Shift counts of codes 8v..8v+7 of a unit inside their plane-P words.
template <int P>
struct Shifts {
  alignas(32) int32_t s[4][8];
  constexpr Shifts() : s{} {
    for (int v = 0; v < 4; ++v)
      for (int l = 0; l < 8; ++l) s[v][l] = quant::plane_shift<P>(8 * v + l);
  }
};
template <int P>
constexpr Shifts<P> kShifts{};

// The plane-P words that hold codes 8V..8V+7 of a unit, one per lane (a plane of width <= 4
// keeps 8 or more codes in a word; an 8-bit plane spreads them over two).
template <int P, int V>
SBITS_AVX2 inline __m256i plane_words(const uint32_t* w) {
  if constexpr (P == 8) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi32(int(w[2 * V]))),
                                   _mm_set1_epi32(int(w[2 * V + 1])), 1);
  } else {
    return _mm256_set1_epi32(int(w[quant::plane_word<P>(8 * V)]));
  }
}

template <int P, int V>
SBITS_AVX2 inline __m256i plane_codes(const uint32_t* w) {
  const __m256i sh = _mm256_load_si256(reinterpret_cast<const __m256i*>(kShifts<P>.s[V]));
  return _mm256_and_si256(_mm256_srlv_epi32(plane_words<P, V>(w), sh), _mm256_set1_epi32((1 << P) - 1));
}

// Codes 8V..8V+7 of a unit as floats.
template <class Codec, int V>
SBITS_AVX2 inline __m256 codes8(const uint32_t* p0, const uint32_t* p1) {
  __m256i q = plane_codes<Codec::kPlane0, V>(p0);
  if constexpr (Codec::kPlane1 != 0) {
    q = _mm256_or_si256(q, _mm256_slli_epi32(plane_codes<Codec::kPlane1, V>(p1), Codec::kPlane0));
  }
  return _mm256_cvtepi32_ps(q);
}

// Accumulators per x row: with one or two x rows, 4 or 2 independent sums hide the FMA latency.
template <int NX>
constexpr int kAccPerRow = NX == 1 ? 4 : NX == 2 ? 2 : 1;

// Eight weights (already f32) times the same 8 columns of every x row.
template <int NX, int V>
SBITS_AVX2 inline void fma_rows(__m256 w, const float* xu, int64_t ldx, __m256 (&a)[NX][kAccPerRow<NX>]) {
  constexpr int slot = V % kAccPerRow<NX>;
  for (int j = 0; j < NX; ++j) a[j][slot] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xu + j * ldx + 8 * V), a[j][slot]);
}

template <class Codec, int NX, int V>
SBITS_AVX2 inline void unit_step(const uint32_t* p0, const uint32_t* p1, __m256 s, __m256 m, const float* xu,
                                 int64_t ldx, __m256 (&a)[NX][kAccPerRow<NX>]) {
  fma_rows<NX, V>(_mm256_fmadd_ps(codes8<Codec, V>(p0, p1), s, m), xu, ldx, a);
}

template <int NX>
SBITS_AVX2 inline void flush(__m256 (&a)[NX][kAccPerRow<NX>], float* acc) {
  for (int j = 0; j < NX; ++j) {
    __m256 t = a[j][0];
    for (int i = 1; i < kAccPerRow<NX>; ++i) t = _mm256_add_ps(t, a[j][i]);
    _mm256_storeu_ps(acc + 8 * j, _mm256_add_ps(_mm256_loadu_ps(acc + 8 * j), t));
  }
}

template <class Codec, int NX>
SBITS_AVX2 void decode_codec(const TileView& t, const float* x, int64_t ldx, float* acc) {
  for (int r = 0; r < t.rows; ++r) {
    __m256 a[NX][kAccPerRow<NX>];
    for (auto& row : a)
      for (auto& v : row) v = _mm256_setzero_ps();
    const uint16_t* sm = t.scales + size_t(r) * size_t(t.groups) * 2;
    for (int g = 0; g < t.groups; ++g) {
      const __m256 s = _mm256_set1_ps(quant::half_to_float(sm[2 * g]));
      const __m256 m = _mm256_set1_ps(quant::half_to_float(sm[2 * g + 1]));
      const int u_end = std::min(t.units, (g + 1) * t.group_units);
      for (int u = g * t.group_units; u < u_end; ++u) {
        const uint32_t* p0 = quant::unit_plane0<Codec>(t, r, u);
        const uint32_t* p1 = quant::unit_plane1<Codec>(t, r, u);
        const float* xu = x + u * kUnitCodes;
        unit_step<Codec, NX, 0>(p0, p1, s, m, xu, ldx, a);
        unit_step<Codec, NX, 1>(p0, p1, s, m, xu, ldx, a);
        unit_step<Codec, NX, 2>(p0, p1, s, m, xu, ldx, a);
        unit_step<Codec, NX, 3>(p0, p1, s, m, xu, ldx, a);
      }
    }
    flush<NX>(a, acc + r * NX * 8);
  }
}

template <int NX>
SBITS_AVX2 void decode_f16(const TileView& t, const float* x, int64_t ldx, float* acc) {
  const int width = t.units * kUnitCodes;
  for (int r = 0; r < t.rows; ++r) {
    __m256 a[NX][kAccPerRow<NX>];
    for (auto& row : a)
      for (auto& v : row) v = _mm256_setzero_ps();
    const uint16_t* w = t.f16 + size_t(r) * size_t(width);
    for (int c = 0; c < width; c += kUnitCodes) {
      const float* xu = x + c;
      fma_rows<NX, 0>(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(w + c))), xu, ldx, a);
      fma_rows<NX, 1>(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(w + c + 8))), xu, ldx, a);
      fma_rows<NX, 2>(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(w + c + 16))), xu, ldx, a);
      fma_rows<NX, 3>(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(w + c + 24))), xu, ldx, a);
    }
    flush<NX>(a, acc + r * NX * 8);
  }
}

// Bitwidth dispatch, once per tile (plain functions: lambdas would not carry the target).
template <int NX>
void decode_nx(const TileView& t, const float* x, int64_t ldx, float* acc) {
  if (t.bits == quant::kKeepF16Bits) return decode_f16<NX>(t, x, ldx, acc);
  quant::dispatch_codec(t.bits, [&](auto codec) { decode_codec<decltype(codec), NX>(t, x, ldx, acc); });
}

// decode_nx<1> .. decode_nx<kDecodeMaxRows>, indexed by n - 1.
using DecodeFn = void (*)(const TileView&, const float*, int64_t, float*);
template <size_t... I>
constexpr std::array<DecodeFn, sizeof...(I)> decode_table(std::index_sequence<I...>) {
  return {&decode_nx<int(I) + 1>...};
}
constexpr auto kDecodeByRows = decode_table(std::make_index_sequence<kDecodeMaxRows>());

void decode_tile(const TileView& t, const float* x, int64_t ldx, int n, float* acc) {
  if (n >= 1 && n <= kDecodeMaxRows) kDecodeByRows[size_t(n - 1)](t, x, ldx, acc);
}

template <class Codec, int V>
SBITS_AVX2 inline void store8(const uint32_t* p0, const uint32_t* p1, __m256 s, __m256 m, float* out) {
  _mm256_storeu_ps(out + 8 * V, _mm256_fmadd_ps(codes8<Codec, V>(p0, p1), s, m));
}

template <class Codec>
SBITS_AVX2 void dequantize_codec(const TileView& t, int r, float* out) {
  const uint16_t* sm = t.scales + size_t(r) * size_t(t.groups) * 2;
  for (int g = 0; g < t.groups; ++g) {
    const __m256 s = _mm256_set1_ps(quant::half_to_float(sm[2 * g]));
    const __m256 m = _mm256_set1_ps(quant::half_to_float(sm[2 * g + 1]));
    const int u_end = std::min(t.units, (g + 1) * t.group_units);
    for (int u = g * t.group_units; u < u_end; ++u) {
      const uint32_t* p0 = quant::unit_plane0<Codec>(t, r, u);
      const uint32_t* p1 = quant::unit_plane1<Codec>(t, r, u);
      float* o = out + u * kUnitCodes;
      store8<Codec, 0>(p0, p1, s, m, o);
      store8<Codec, 1>(p0, p1, s, m, o);
      store8<Codec, 2>(p0, p1, s, m, o);
      store8<Codec, 3>(p0, p1, s, m, o);
    }
  }
}

SBITS_AVX2 void dequantize_f16(const TileView& t, int r, float* out) {
  const int width = t.units * kUnitCodes;
  const uint16_t* w = t.f16 + size_t(r) * size_t(width);
  for (int c = 0; c < width; c += 8)
    _mm256_storeu_ps(out + c, _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(w + c))));
}

void dequantize_row(const TileView& t, int r, float* out) {
  if (t.bits == quant::kKeepF16Bits) return dequantize_f16(t, r, out);
  quant::dispatch_codec(t.bits, [&](auto codec) { dequantize_codec<decltype(codec)>(t, r, out); });
}

constexpr TiledKernels kAvx2Tiled{CpuIsa::avx2, &decode_tile, &dequantize_row};

}  // namespace

const TiledKernels* avx2_tiled_kernels() { return &kAvx2Tiled; }

}  // namespace sbits::kernels::cpu

#else

namespace sbits::kernels::cpu {
const TiledKernels* avx2_tiled_kernels() { return nullptr; }
}  // namespace sbits::kernels::cpu

#endif
