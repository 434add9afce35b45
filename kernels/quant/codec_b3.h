// 3-bit codes: planes 2 + 1. Bit layout of one pack unit (32 codes c0..c31 of one row; each
// word drawn from bit 31 on the left to bit 0 on the right, `||` marks bit 16; see
// codec_plane.h for why even codes go low and odd codes high):
//
// plane 0: code bits 0..1, 2-bit cells, 2 words per unit, 16 codes per word
//   word 0: | c15 c13 c11 c9 c7 c5 c3 c1 || c14 c12 c10 c8 c6 c4 c2 c0 |
//   word 1: | c31 c29 c27 c25 c23 c21 c19 c17 || c30 c28 c26 c24 c22 c20 c18 c16 |
//
// plane 1: code bit 2, 1-bit cells, 1 word per unit, 32 codes per word
//   word 0: | c31 c29 ... c3 c1 || c30 c28 ... c2 c0 |
//
// Decode: q = plane0 | plane1 << 2; weight = scale * q + min (tiled.h).
#pragma once

#include "kernels/quant/codec_plane.h"

namespace sbits::kernels::quant {

template <>
struct Codec<3> : PlaneCodec<3, 2, 1> {};

}  // namespace sbits::kernels::quant
