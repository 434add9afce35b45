// Bit planes: the building block of every tiled codec (codec_b2.h ... codec_b8.h).
//
// A b-bit code is split into at most two planes whose widths are powers of two:
//   b = 2: 2      b = 3: 2 + 1      b = 4: 4      b = 5: 4 + 1      b = 6: 4 + 2      b = 8: 8
// Plane 0 holds the low bits, plane 1 the high bits. Power-of-two planes never let a code
// straddle a 32-bit word, so every code is one shift and one mask away, for every bitwidth,
// with no per-weight branching (exllamav2's 3/5/6-bit layouts need special cases instead).
//
// A pack unit is 32 consecutive codes (columns) of one row. In a plane of width P the unit
// takes P words of 32 bits; word k holds codes k*n .. k*n + n - 1, n = 32 / P, and code i of a
// word (i = 0..n-1) sits at bit P * slot(i), with
//     slot(i) = i / 2 + (i % 2) * n / 2
// i.e. even codes fill the low 16 bits in order and odd codes the high 16 bits:
//
//   P = 4, one word, codes c0..c7:   bit 31                                    bit 0
//                                    | c7 | c5 | c3 | c1 || c6 | c4 | c2 | c0 |
//
// Why: a pair of neighbours (c[2k], c[2k+1]) lands at bits (P*k, P*k + 16), so on a GPU one
// `(w >> P*k) & mask16x2` yields both codes in the two halves of a 32-bit register, ready for
// the f16x2 "magic number" conversion (0x6400 | q -> 1024 + q) and a half2 FMA. On the CPU the
// order costs nothing: AVX2 decodes 8 codes with one variable shift (vpsrlvd) whose shift
// counts are simply permuted.
#pragma once

#include <cstdint>

#include "kernels/quant/hd.h"

namespace sbits::kernels::quant {

inline constexpr int kUnitCodes = 32;  // codes per pack unit

// Bit position of code `i` (0..31) of a unit inside its word, for plane width P.
template <int P>
SBITS_HD constexpr int plane_shift(int i) {
  constexpr int n = 32 / P;
  const int j = i % n;
  return P * (j / 2 + (j % 2) * (n / 2));
}

// Word of the unit (0..P-1) that holds code `i`.
template <int P>
SBITS_HD constexpr int plane_word(int i) {
  return i / (32 / P);
}

// Writes bits [lsb, lsb + P) of the 32 codes q[0..31] into the P words of one plane.
template <int P>
SBITS_HD inline void plane_pack(const uint8_t* q, int lsb, uint32_t* words) {
  static_assert(P == 1 || P == 2 || P == 4 || P == 8, "plane widths are powers of two");
  for (int k = 0; k < P; ++k) words[k] = 0;
  for (int i = 0; i < kUnitCodes; ++i) {
    const uint32_t v = (uint32_t(q[i]) >> lsb) & ((1u << P) - 1u);
    words[plane_word<P>(i)] |= v << plane_shift<P>(i);
  }
}

// The P bits of code `i` from one plane (not yet shifted to their place in the code).
template <int P>
SBITS_HD inline uint32_t plane_get(const uint32_t* words, int i) {
  return (words[plane_word<P>(i)] >> plane_shift<P>(i)) & ((1u << P) - 1u);
}

// Codes 2k and 2k+1 of a unit (k = 0..15), in the low and high 16 bits of the result: the
// form a GPU kernel converts to f16x2 in one step.
template <int P>
SBITS_HD inline uint32_t plane_pair(const uint32_t* words, int k) {
  constexpr uint32_t mask = ((1u << P) - 1u) * 0x00010001u;
  return (words[plane_word<P>(2 * k)] >> plane_shift<P>(2 * k)) & mask;
}

// A b-bit codec made of plane 0 (P0 low bits) and optionally plane 1 (P1 high bits; 0: none).
// A unit stores P0 words in plane 0 and P1 words in plane 1 (the tile keeps the planes in
// separate regions, see tiled.h), so pack/get take one pointer per plane.
template <int B, int P0, int P1>
struct PlaneCodec {
  static_assert(P0 + P1 == B, "planes must add up to the bitwidth");
  static constexpr int kBits = B;
  static constexpr int kPlane0 = P0;
  static constexpr int kPlane1 = P1;
  static constexpr int kWords = B;  // 32-bit words per unit of 32 codes, all planes together
  static constexpr uint32_t kMaxCode = (1u << B) - 1u;

  // q[0..31] must be <= kMaxCode. p1 is unused (may be null) when P1 == 0.
  SBITS_HD static void pack(const uint8_t* q, uint32_t* p0, uint32_t* p1) {
    plane_pack<P0>(q, 0, p0);
    if constexpr (P1 != 0) plane_pack<P1>(q, P0, p1);
  }
  SBITS_HD static uint32_t get(const uint32_t* p0, const uint32_t* p1, int i) {
    uint32_t v = plane_get<P0>(p0, i);
    if constexpr (P1 != 0) v |= plane_get<P1>(p1, i) << P0;
    return v;
  }
  SBITS_HD static void unpack(const uint32_t* p0, const uint32_t* p1, uint8_t* q) {
    for (int i = 0; i < kUnitCodes; ++i) q[i] = uint8_t(get(p0, p1, i));
  }
  SBITS_HD static uint32_t pair(const uint32_t* p0, const uint32_t* p1, int k) {
    uint32_t v = plane_pair<P0>(p0, k);
    if constexpr (P1 != 0) v |= plane_pair<P1>(p1, k) << P0;
    return v;
  }
};

// Codec<B> for B in {2, 3, 4, 5, 6, 8}: one header per bitwidth, codec_bB.h.
template <int B>
struct Codec;

}  // namespace sbits::kernels::quant
