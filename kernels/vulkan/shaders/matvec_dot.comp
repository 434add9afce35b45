#version 450
// The split tiled matvec (matvec_tiled.comp's work split and loads, matvec_split.glsl) with
// integer dot products: the CUDA backend's variant 6 arithmetic (kernels/cuda/tiled_dp4a.cu) on
// devices with shaderIntegerDotProduct (Vulkan 1.3 core; VK_KHR_shader_integer_dot_product).
//
// Why: the f32 path spends three instructions per weight (a shift and an and-or to decode the
// code, an FMA), and at 2-3 bits the issue rate, not the memory, bounds it. A 4x8-bit dot
// product multiplies four codes by four digits of x in one instruction where the GPU has one
// (NVIDIA's is CUDA's dp4a).
//
// x: xq.comp writes x per 32 columns as x ~ d (hi + lo / 256), int8 digits, d = max |x| / 127
// over the 32 columns, each within d / 256 of x: per 128-column tile column, 4 plane widths
// (1, 2, 4, 8) x 4 units x {8 hi words, 8 lo words}, the digits of each word in the byte order
// the codes of that plane width come out of (w >> P c) & mask (below), then {d / 256, sum x} per
// unit after all tile columns; row r of x (grid z) from word r tiles_c XQ_TILE_WORDS on
// (xq_layout.glsl). So sum_c q_c x_c = (d / 256) (256 sum q hi + sum q lo), both integer sums
// exact (|256 H + L| < 2^31 even for 8-bit codes: 255 * 127 * 32 * 257).
//
// Codes: a word of a plane of width P holds n = 32 / P codes (codec_plane.h's pair order), and
// (w >> P c) & mask(P) leaves in byte b the code [2c, n/2 + 2c, 2c + 1, n/2 + 2c + 1][b] of the
// word, c = 0 .. 8/P - 1: one class of four codes per dot product. A high plane (3, 5 and 6
// bits) is shifted to bit P0 of each byte by the same shift-and-mask, so both planes add into
// one pair of sums.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_EXT_spirv_intrinsics : require
#include "xq_layout.glsl"

// OpSUDotKHR (4452): the 4x8-bit packed dot product of signed digits and unsigned codes (8-bit
// codes reach 255). Capabilities DotProductKHR (6019), DotProductInput4x8BitPackedKHR (6018).
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4452)
int dot_su_(uint signed_digits, uint unsigned_codes, spirv_literal int packed_4x8);
#define DOT_SU(d_, c_) dot_su_(d_, c_, 0)

layout(binding = 6) readonly buffer BQ4 { uvec4 XQ4[]; };  // xq.comp's digits, then the meta
layout(binding = 6) readonly buffer BQ2 { uvec2 XQ2[]; };

// hi, lo += sum (codes << SH) digits over the P words w of one plane against its digits xd.
#define DOT_PLANE(P_, SH_, w, xd)                                                               \
  [[unroll]] for (uint k_ = 0; k_ < (P_); ++k_) {                                               \
    [[unroll]] for (uint c_ = 0; c_ < 8u / (P_); ++c_) {                                        \
      const int s_ = int((P_) * c_) - int(SH_);                                                 \
      const uint v_ = (s_ >= 0 ? w[k_] >> uint(s_) : w[k_] << uint(-s_)) &                     \
                      ((((1u << (P_)) - 1u) * 0x01010101u) << (SH_));                           \
      hi += DOT_SU(xd[k_ * (8u / (P_)) + c_], v_);                                              \
      lo += DOT_SU(xd[8u + k_ * (8u / (P_)) + c_], v_);                                         \
    }                                                                                           \
  }

#define ROW_DOT(P0_, P1_, w0, w1, sw, j)                                                        \
  {                                                                                             \
    int hi = 0, lo = 0;                                                                         \
    DOT_PLANE(P0_, 0u, w0, x0)                                                                  \
    if ((P1_) > 0u) { DOT_PLANE(max(P1_, 1u), P0_, w1, x1) }                                    \
    const vec2 sm = unpackHalf2x16(sw);                                                         \
    if (row_of(rg, j, l) < rows_t) acc[j] += fma(sm.x, float(hi * 256 + lo) * xm.x, sm.y * xm.y); \
  }

// Index of plane width P's digits among a tile column's four.
#define PLANE_SLOT(P_) ((P_) == 1u ? 0u : (P_) == 2u ? 1u : (P_) == 4u ? 2u : 3u)

// The unit's 16 digit words for plane width P (8 hi, 8 lo) at xd.
#define LOAD_DIGITS(xd, P_)                                                                     \
  [[unroll]] for (uint h_ = 0; h_ < 4u; ++h_) {                                                 \
    const uvec4 q_ = XQ4[x_row() * p.tiles_c * (XQ_TILE_WORDS / 4u) + tcol * (XQ_TILE_DIGIT_WORDS / 4u) + \
                         PLANE_SLOT(P_) * 16u + u * 4u + h_];                                    \
    xd[4u * h_] = q_.x; xd[4u * h_ + 1u] = q_.y; xd[4u * h_ + 2u] = q_.z; xd[4u * h_ + 3u] = q_.w; \
  }

// x0, x1: the digits for the tile's planes; xm: {d / 256, sum x} of the unit.
#define LOAD_UNIT_X(P0_, P1_)                                                                   \
  uint x0[16], x1[16];                                                                          \
  LOAD_DIGITS(x0, P0_)                                                                          \
  if ((P1_) > 0u) { LOAD_DIGITS(x1, max(P1_, 1u)) }                                             \
  const vec2 xm = uintBitsToFloat(XQ2[x_row() * p.tiles_c * (XQ_TILE_WORDS / 2u) +                \
                                      p.tiles_c * (XQ_TILE_DIGIT_WORDS / 2u) + tcol * (XQ_TILE_META_WORDS / 2u) + u]);

#include "matvec_split.glsl"
