// The one dispatch point from a run-time bitwidth to its codec (codec_b2.h ... codec_b8.h).
// Kernels are templates over Codec<B>; a tile's bitwidth is read once per tile and chosen
// here, so the inner loops never branch per weight.
#pragma once

#include "kernels/quant/codec_b2.h"
#include "kernels/quant/codec_b3.h"
#include "kernels/quant/codec_b4.h"
#include "kernels/quant/codec_b5.h"
#include "kernels/quant/codec_b6.h"
#include "kernels/quant/codec_b8.h"

namespace sbits::kernels::quant {

// Bitwidths a tile may have: the codecs, plus 16 = the tile is kept as plain f16.
inline constexpr int kTileBitwidths[] = {2, 3, 4, 5, 6, 8, 16};
inline constexpr int kKeepF16Bits = 16;

SBITS_HD constexpr bool is_codec_bits(int b) { return b == 2 || b == 3 || b == 4 || b == 5 || b == 6 || b == 8; }
SBITS_HD constexpr bool is_tile_bits(int b) { return is_codec_bits(b) || b == kKeepF16Bits; }

// Width of plane 0 (the low bits) and plane 1 (the high bits, 0 if none) of a codec bitwidth;
// 0 for anything else. Mirrors Codec<B>::kPlane0/kPlane1 for code that has B only at run time.
SBITS_HD constexpr int plane0_bits(int b) { return b == 2 || b == 3 ? 2 : b == 8 ? 8 : is_codec_bits(b) ? 4 : 0; }
SBITS_HD constexpr int plane1_bits(int b) { return is_codec_bits(b) ? b - plane0_bits(b) : 0; }

// Calls f(Codec<B>{}) for the codec of `bits`. Returns false (and calls nothing) when `bits` is
// not a codec bitwidth (16 and invalid values are the caller's business).
template <class F>
SBITS_HD bool dispatch_codec(int bits, F&& f) {
  switch (bits) {
    case 2: f(Codec<2>{}); return true;
    case 3: f(Codec<3>{}); return true;
    case 4: f(Codec<4>{}); return true;
    case 5: f(Codec<5>{}); return true;
    case 6: f(Codec<6>{}); return true;
    case 8: f(Codec<8>{}); return true;
    default: return false;
  }
}

}  // namespace sbits::kernels::quant
