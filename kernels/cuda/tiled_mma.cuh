// The tensor-core matvec on tiled weights: the codes of a tile are decoded in registers into
// exact small integers in f16 and multiplied with x in f16 by mma.m16n8k16 with f32
// accumulation; the tile's scale and min are applied per row afterwards, in f32:
//     y[o] += scale[o] * sum_c q[o, c] x[c]  +  min[o] * sum_c x[c]
// which is sum_c (scale q + min) x[c] with the products exact and the sums in f32. The only
// rounding beyond the CPU's f32 arithmetic is x itself to f16 (2^-11 relative).
//
// Work split (tiles of R x 128 columns with one group of 128, R % 16 == 0): a warp owns 16
// rows of one tile strip and a range of tile columns; within a tile, thread (g = lane / 4,
// t = lane % 4) owns pack unit t (columns 32t .. 32t + 31) of rows g and g + 8 - the rows an
// m16n8k16 A fragment gives it. Its words are contiguous in every plane, so a warp reads a
// plane of its 16 rows as one run of 16-row x (4 units x P words), fully coalesced: 16-byte
// loads for 4- and 8-bit planes, 8 or 4 bytes for the narrow ones. The MMA's k order is free
// (A and B only need the same permutation), so k-slot pair (2t, 2t+1) of step s is code pair
// 2s of the thread's unit and (2t+8, 2t+9) is pair 2s+1; x is loaded in the same order.
//
// N = 8 of the MMA holds up to 8 rows of x (batched decode); unused columns are zero.
//
// Code pairs (codec_plane.h): codes 2k and 2k+1 sit at bits s and 16 + s of one word, so
// one mask puts both into the low mantissa bits of an f16x2 whose exponent makes it 1024 + q
// (0x6400 | q). Leaving the pair at bit p = s % 8 of the half (and shifting the word by 0 or 8,
// shared by the pairs it holds) gives 1024 + q 2^p, still exact while q 2^p < 1024, and one
// HFMA2 by (2^-p, -2^(10-p)) returns q exactly. A second plane is or-ed in above the first
// before that (planes are at most 4 + 2 bits: 63 * 16 < 1024).
#pragma once

#include "kernels/cuda/device_util.cuh"

namespace sbits::kernels::cuda::mma {

// Weights are read once: bypass L1 (x stays there) and ask L2 for 256-byte lines.
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}
__device__ __forceinline__ uint2 ld_stream8(const void* p) {
  uint2 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}
__device__ __forceinline__ uint32_t ld_stream4(const void* p) {
  uint32_t v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Calls f(Int<B>{}) for a tile bitwidth: the codecs through quant::dispatch_codec (the one
// dispatch point from bitwidth to codec), and 16 for f16 tiles. Tiles are warp-uniform, so
// this branch never diverges and never runs per weight.
template <class F>
__device__ __forceinline__ void dispatch_bits(int bits, F&& f) {
  if (bits == quant::kKeepF16Bits) {
    f(Int<16>{});
    return;
  }
  quant::dispatch_codec(bits, [&](auto codec) { f(Int<decltype(codec)::kBits>{}); });
}

// The codes of one thread in one tile: plane words of its unit for rows g and g + 8, and the
// {scale, min} f16 pairs of those rows.
struct TileRegs {
  uint32_t w0[2][8];
  uint32_t w1[2][2];
  uint32_t sm[2];
};

struct Geometry {
  int g, t;    // lane / 4, lane % 4
  int lr0;     // first row of the warp inside the tile
  int rows_t;  // valid rows of the tile
  int units;   // pack units stored per row (4, fewer in the last tile column)
};

// Plain loads for tiles already in shared memory.
template <bool kShared>
__device__ __forceinline__ uint4 ld16(const uint32_t* p) {
  if constexpr (kShared) return *reinterpret_cast<const uint4*>(p);
  return ld_stream16(p);
}
template <bool kShared>
__device__ __forceinline__ uint2 ld8(const uint32_t* p) {
  if constexpr (kShared) return *reinterpret_cast<const uint2*>(p);
  return ld_stream8(p);
}
template <bool kShared>
__device__ __forceinline__ uint32_t ld4(const uint32_t* p) {
  if constexpr (kShared) return *p;
  return ld_stream4(p);
}

// The thread's words of one tile for rows lr0 + g and lr0 + g + 8 (of rows_t valid rows), from
// planes p0, p1 and the {scale, min} words sc (global or shared memory), one group of 128
// columns per row: word k of (row r, unit u) of plane P at (r * units + u) * P + k.
// kCheck = false skips the bounds checks: for a tile staged in shared memory, where a row or
// unit past the tile's edge reads stale but finite codes (times zero x, or rows never stored).
template <int B, bool kShared = false, bool kCheck = true>
__device__ __forceinline__ void load_codes(const uint32_t* p0, const uint32_t* p1, const uint32_t* sc,
                                           const Geometry& geo, TileRegs& r) {
  constexpr int P0 = quant::plane0_bits(B), P1 = quant::plane1_bits(B);
  static_for<2>([&](auto H) {
    constexpr int h = H.value;
    const int row = geo.lr0 + geo.g + 8 * h;
    const int unit = row * geo.units + geo.t;
    static_for<8>([&](auto K) { r.w0[h][K.value] = 0; });
    static_for<2>([&](auto K) { r.w1[h][K.value] = 0; });
    if (!kCheck || (row < geo.rows_t && geo.t < geo.units)) {
      if constexpr (P0 == 2) {
        const uint2 v = ld8<kShared>(p0 + unit * 2);
        r.w0[h][0] = v.x, r.w0[h][1] = v.y;
      } else {
        static_for<P0 / 4>([&](auto V) {
          const uint4 v = ld16<kShared>(p0 + unit * P0 + 4 * V.value);
          r.w0[h][4 * V.value] = v.x, r.w0[h][4 * V.value + 1] = v.y;
          r.w0[h][4 * V.value + 2] = v.z, r.w0[h][4 * V.value + 3] = v.w;
        });
      }
      if constexpr (P1 == 1) r.w1[h][0] = ld4<kShared>(p1 + unit);
      if constexpr (P1 == 2) {
        const uint2 v = ld8<kShared>(p1 + unit * 2);
        r.w1[h][0] = v.x, r.w1[h][1] = v.y;
      }
    }
    r.sm[h] = !kCheck || row < geo.rows_t ? ld4<kShared>(sc + row) : 0u;
  });
}

// The same from a tile in global memory (plane offsets as in quant::tile_view).
template <int B>
__device__ __forceinline__ void load_codes(const uint8_t* tile, const Geometry& geo, TileRegs& r) {
  constexpr int P0 = quant::plane0_bits(B), P1 = quant::plane1_bits(B);
  const uint64_t b0 = quant::tile_plane_bytes(geo.rows_t, geo.units, P0);
  const uint64_t b1 = quant::tile_plane_bytes(geo.rows_t, geo.units, P1);
  load_codes<B, false>(reinterpret_cast<const uint32_t*>(tile), reinterpret_cast<const uint32_t*>(tile + b0),
                       reinterpret_cast<const uint32_t*>(tile + b0 + b1), geo, r);
}

// Codes 2K and 2K+1 of the thread's unit as an f16x2 of exact integers (see the top comment).
template <int B, int K>
__device__ __forceinline__ uint32_t code_pair(const uint32_t (&w0)[8], const uint32_t (&w1)[2]) {
  constexpr int P0 = quant::plane0_bits(B), P1 = quant::plane1_bits(B);
  constexpr int per0 = 16 / P0;               // pairs per plane-0 word
  constexpr int s0 = P0 * (K % per0);         // bit of the pair's even code
  constexpr int p = s0 % 8, r0 = s0 - p;      // r0 is 0 or 8
  static_assert(((1 << B) - 1) << p < 1024, "the code must stay inside the f16 mantissa");
  constexpr uint32_t m0 = ((1u << P0) - 1u) * 0x00010001u;
  uint32_t v = ((w0[K / per0] >> r0) & (m0 << p)) | 0x64006400u;
  if constexpr (P1 != 0) {
    constexpr int per1 = 16 / P1, s1 = P1 * (K % per1), d = s1 - (p + P0);
    constexpr uint32_t m1 = (((1u << P1) - 1u) * 0x00010001u) << (p + P0);
    const uint32_t w = w1[K / per1];
    if constexpr (d >= 0)
      v |= (w >> d) & m1;
    else
      v |= (w << -d) & m1;
  }
  constexpr uint32_t scale = (uint32_t(15 - p) << 10) * 0x00010001u;            // 2^-p
  constexpr uint32_t bias = (0x8000u | (uint32_t(25 - p) << 10)) * 0x00010001u;  // -2^(10-p)
  return as_u32(__hfma2(as_half2(v), as_half2(scale), as_half2(bias)));
}

// Where code pair k (codes 2k, 2k + 1 of a pack unit) sits in its f16 half: bit p of the
// mantissa, for a plane 0 of width P0 (the pair's word is shifted by 0 or 8 first).
__host__ __device__ constexpr int pair_shift(int P0, int k) { return (P0 * (k % (16 / P0))) % 8; }
// The offset sum a plane-0 width goes to (launch.h kXSumStride): 1, 2, 3 for P0 = 2, 4, 8.
__host__ __device__ constexpr int offset_class(int P0) { return P0 == 2 ? 1 : P0 == 4 ? 2 : 3; }

// Variant 4's decode: the same pair without the HFMA2. The exponent is chosen per pair so
// that the code's lowest bit weighs exactly 1: with the pair at mantissa bit p the f16 is
// 2^(10-p) (1 + q 2^p / 1024) = 2^(10-p) + q. So one LOP3 (mask, or the exponent in) per pair
// for 2-, 4- and 8-bit codes; the MMA then sums (2^(10-p) + q) x onto accumulators that start
// at -sum 2^(10-p) x (init_offset), a sum that depends on x and the plane-0 width only (the
// "offset sums" convert_x writes per 128 columns). Both sums are exact products added in f32:
// the cancellation costs about 2^-24 * 2^(10-p) / q of the result, far below the f16 rounding
// of x.
// The exponents 2^(10-p) for p = 0, 2, 4, 6 (p is always even) must sit in registers: a SASS
// LOP3 takes one immediate, so with both the mask and the exponent as immediates the decode
// is two LOP3s per pair. An inline-asm mov of an immediate did not stop ptxas from folding it
// back (run 15's SASS: 66 LOP3s per 16 x 128 block at 2 bits instead of 32), so the values
// come from a global the compiler cannot assume constant (tiled_mma.cu g_mma_expo), loaded
// once per thread.
struct Expo {
  uint32_t e[4];
};

template <int B, int K>
__device__ __forceinline__ uint32_t code_pair_raw(const uint32_t (&w0)[8], const uint32_t (&w1)[2], const Expo& ex) {
  constexpr int P0 = quant::plane0_bits(B), P1 = quant::plane1_bits(B);
  constexpr int per0 = 16 / P0;
  constexpr int s0 = P0 * (K % per0);
  constexpr int p = s0 % 8, r0 = s0 - p;
  static_assert(((1 << B) - 1) << p < 1024, "the code must stay inside the f16 mantissa");
  constexpr uint32_t m0 = ((1u << P0) - 1u) * 0x00010001u;
  static_assert(p % 2 == 0, "pairs sit at even bits");
  uint32_t v = ((w0[K / per0] >> r0) & (m0 << p)) | ex.e[p / 2];  // 2^(10-p) + q
  if constexpr (P1 != 0) {
    constexpr int per1 = 16 / P1, s1 = P1 * (K % per1), d = s1 - (p + P0);
    constexpr uint32_t m1 = (((1u << P1) - 1u) * 0x00010001u) << (p + P0);
    const uint32_t w = w1[K / per1];
    if constexpr (d >= 0)
      v |= (w >> d) & m1;
    else
      v |= (w << -d) & m1;
  }
  return v;
}

template <int B>
__device__ __forceinline__ void mma_codes_raw(const TileRegs& r, const uint32_t (&x)[16], float (&c)[4],
                                              const Expo& ex) {
  float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  static_for<8>([&](auto S) {
    constexpr int s = S.value;
    float(&acc)[4] = s % 2 ? d : c;
    mma16816(acc, code_pair_raw<B, 2 * s>(r.w0[0], r.w1[0], ex), code_pair_raw<B, 2 * s>(r.w0[1], r.w1[1], ex),
             code_pair_raw<B, 2 * s + 1>(r.w0[0], r.w1[0], ex), code_pair_raw<B, 2 * s + 1>(r.w0[1], r.w1[1], ex),
             x[2 * s], x[2 * s + 1]);
  });
  static_for<4>([&](auto I) { c[I.value] += d[I.value]; });
}

// Variant 4's accumulators start at -offset (offset = sum 2^(10-p) x, x rows 2t and 2t + 1 in
// the C fragment's columns), so that the MMAs leave sum q x: one FADD per output fewer.
__device__ __forceinline__ void init_offset(float (&c)[4], float2 off) {
  c[0] = -off.x, c[1] = -off.y, c[2] = -off.x, c[3] = -off.y;
}

// Two accumulators (even and odd steps) halve the chain of dependent MMAs.
template <int B>
__device__ __forceinline__ void mma_codes(const TileRegs& r, const uint32_t (&x)[16], float (&c)[4]) {
  float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  static_for<8>([&](auto S) {
    constexpr int s = S.value;
    float(&acc)[4] = s % 2 ? d : c;
    mma16816(acc, code_pair<B, 2 * s>(r.w0[0], r.w1[0]), code_pair<B, 2 * s>(r.w0[1], r.w1[1]),
             code_pair<B, 2 * s + 1>(r.w0[0], r.w1[0]), code_pair<B, 2 * s + 1>(r.w0[1], r.w1[1]), x[2 * s],
             x[2 * s + 1]);
  });
  static_for<4>([&](auto I) { c[I.value] += d[I.value]; });
}

// An f16 tile (rare: the quantizer keeps a few sensitive tiles exact): row r is 32 * units
// halves; the thread's unit is 64 bytes of it, already pairs in MMA order.
__device__ __forceinline__ void mma_f16_tile(const uint8_t* tile, const Geometry& geo, const uint32_t (&x)[16],
                                             float (&c)[4]) {
  uint32_t w[2][16];
  static_for<2>([&](auto H) {
    constexpr int h = H.value;
    const int row = geo.lr0 + geo.g + 8 * h;
    const bool ok = row < geo.rows_t && geo.t < geo.units;
    const uint8_t* p = tile + (size_t(row) * size_t(geo.units) * 32 + size_t(geo.t) * 32) * 2;
    static_for<4>([&](auto V) {
      const uint4 v = ok ? ld_stream16(p + 16 * V.value) : make_uint4(0, 0, 0, 0);
      w[h][4 * V.value] = v.x, w[h][4 * V.value + 1] = v.y, w[h][4 * V.value + 2] = v.z, w[h][4 * V.value + 3] = v.w;
    });
  });
  static_for<8>([&](auto S) {
    constexpr int s = S.value;
    mma16816(c, w[0][2 * s], w[1][2 * s], w[0][2 * s + 1], w[1][2 * s + 1], x[2 * s], x[2 * s + 1]);
  });
}

// y (rows g, g+8 x columns 2t, 2t+1 of the C fragment) += scale * c + min * sum(x).
__device__ __forceinline__ void apply_scales(const float (&c)[4], const TileRegs& r, float2 xs, float (&y)[4]) {
  const float2 a = __half22float2(as_half2(r.sm[0])), b = __half22float2(as_half2(r.sm[1]));  // {scale, min}
  y[0] = fmaf(a.x, c[0], fmaf(a.y, xs.x, y[0]));
  y[1] = fmaf(a.x, c[1], fmaf(a.y, xs.y, y[1]));
  y[2] = fmaf(b.x, c[2], fmaf(b.y, xs.x, y[2]));
  y[3] = fmaf(b.x, c[3], fmaf(b.y, xs.y, y[3]));
}

}  // namespace sbits::kernels::cuda::mma

namespace sbits::kernels::cuda {

// A grouped launch's block row blockIdx.x as block row bx of its member: the launch's
// arguments with that member's weight, output and split-K scratch (selected by value, so the
// member array is never indexed dynamically).
__device__ __forceinline__ TiledMmaArgs group_member(const TiledMmaArgs& g, int64_t& bx) {
  TiledMmaArgs a = g;
  bx = blockIdx.x;
  if (g.group <= 1) return a;
  int64_t b0 = 0;
  static_for<kTiledMmaMaxGroup - 1>([&](auto I) {
    const TiledMmaMember& m = g.members[I.value + 1];
    if (I.value + 1 < g.group && int64_t(blockIdx.x) >= m.block0)
      a.t = m.t, a.y = m.y, a.accumulate = m.accumulate, b0 = m.block0;
  });
  bx -= b0;
  if (a.partial) a.partial += b0 * 64;
  if (a.counters) a.counters += b0;
  return a;
}

}  // namespace sbits::kernels::cuda
