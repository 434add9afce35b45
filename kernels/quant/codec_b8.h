// 8-bit codes: one plane. Bit layout of one pack unit (32 codes c0..c31 of one row; each
// word drawn from bit 31 on the left to bit 0 on the right, `||` marks bit 16; see
// codec_plane.h for why even codes go low and odd codes high):
//
// plane 0: code bits 0..7, 8-bit cells, 8 words per unit, 4 codes per word
//   word 0: | c3 c1 || c2 c0 |
//   word 1: | c7 c5 || c6 c4 |
//   word 2: | c11 c9 || c10 c8 |
//   word 3: | c15 c13 || c14 c12 |
//   word 4: | c19 c17 || c18 c16 |
//   word 5: | c23 c21 || c22 c20 |
//   word 6: | c27 c25 || c26 c24 |
//   word 7: | c31 c29 || c30 c28 |
//
// Decode: q = plane0; weight = scale * q + min (tiled.h).
#pragma once

#include "kernels/quant/codec_plane.h"

namespace sbits::kernels::quant {

template <>
struct Codec<8> : PlaneCodec<8, 8, 0> {};

}  // namespace sbits::kernels::quant
