// The tiled weights' codes in the compute shaders (formats/SBITS.md "Layout 16";
// kernels/quant/codec_plane.h): the weight buffer's views, plane loads and the exact decode of a
// code to f32. Included by tiled.comp and matvec_tiled.comp; binding 0 is the tiled tensor.
#ifndef SBITS_TILED_CODES_GLSL
#define SBITS_TILED_CODES_GLSL

layout(binding = 0) readonly buffer BW { uint W[]; };
layout(binding = 0) readonly buffer BW2 { uvec2 W2[]; };
layout(binding = 0) readonly buffer BW4 { uvec4 W4[]; };

// A plane's size in words, padded to 16 bytes (quant::tile_plane_bytes).
uint pad4(uint words) { return (words + 3u) & ~3u; }

// Code `q` of P bits at bit `pos` of w as the f32 2^P + q: one shift brings the code to the top
// P bits of the mantissa and one and-or gives it the exponent that makes its lowest bit weigh
// 1. Exact, and no int-to-float conversion (a quarter-rate instruction on NVIDIA): two integer
// operations per code. The 2^P is taken out per unit: sum (2^P + q) x = 2^P sum x + sum q x.
// Why 2^P and not a larger offset: the products (2^P + q) x round relative to 2^(P+1) |x|, so
// a small offset keeps the error near 2^-24 of the weights' range.
float code_f(uint w, uint P, uint pos) {
  const int sh = int(pos) - int(23u - P);
  const uint v = sh >= 0 ? w >> uint(sh) : w << uint(-sh);
  return uintBitsToFloat((v & (((1u << P) - 1u) << (23u - P))) | ((127u + P) << 23));
}

// Bit position of code i (0..31) of a unit in its plane word (codec_plane.h: even codes in the
// low half-word, odd codes in the high half-word).
#define CODE_POS(P_, i) ((P_) * ((((i) % (32u / (P_))) / 2u) + (((i) % (32u / (P_))) % 2u) * (16u / (P_))))

// The P words of a unit's plane at word `at` (aligned to P words by the layout): one 4-, 8- or
// 16-byte load (two for P = 8).
#define LOAD_PLANE(dst, at, P_)                                       \
  if ((P_) == 1u) {                                                   \
    dst[0] = W[at];                                                   \
  } else if ((P_) == 2u) {                                            \
    const uvec2 a_ = W2[(at) / 2u];                                   \
    dst[0] = a_.x; dst[min(1u, (P_) - 1u)] = a_.y;                    \
  } else {                                                            \
    [[unroll]] for (uint h_ = 0; h_ < (P_) / 4u; ++h_) {              \
      const uvec4 a_ = W4[(at) / 4u + h_];                            \
      dst[min(4u * h_, (P_) - 1u)] = a_.x; dst[min(4u * h_ + 1u, (P_) - 1u)] = a_.y; \
      dst[min(4u * h_ + 2u, (P_) - 1u)] = a_.z; dst[min(4u * h_ + 3u, (P_) - 1u)] = a_.w; \
    }                                                                 \
  }

// Code i of a unit as the f32 q_i + C exactly, C = 2^P0 (+ 2^(P0 + P1) with a high plane): each
// plane 2^P + its bits (code_f), the high plane scaled by 2^P0 with one exact FMA. w0 holds the
// unit's P0 words of plane 0, w1 its P1 words of plane 1 (unused when P1 = 0).
#define UNIT_CODE_F(P0_, P1_, w0, w1, i)                                                          \
  ((P1_) > 0u ? fma(float(1u << (P0_)),                                                           \
                    code_f(w1[(i) / (32u / max(P1_, 1u))], max(P1_, 1u), CODE_POS(max(P1_, 1u), i)), \
                    code_f(w0[(i) / (32u / (P0_))], P0_, CODE_POS(P0_, i)))                       \
              : code_f(w0[(i) / (32u / (P0_))], P0_, CODE_POS(P0_, i)))

// C of UNIT_CODE_F.
#define UNIT_CODE_OFFSET(P0_, P1_) (float(1u << (P0_)) + ((P1_) > 0u ? float(1u << ((P0_) + (P1_))) : 0.0))

#endif
