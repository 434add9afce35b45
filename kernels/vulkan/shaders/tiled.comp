#version 450
// Tiled mixed-bitwidth weights (formats/SBITS.md "Layout 16"; kernels/quant/tiled.h).
// MODE (specialization constant 0):
//   0 matvec: y[j, o] (=|+=) sum_i x[j, i] W[o, i] for NB (constant 1) <= 8 rows of x. A
//     workgroup of 256 takes RW (constant 2: 8, 16, 32 or 64) rows of one tile strip (see
//     matvec() for the map). Codes become floats with two integer operations each (code_f),
//     are multiplied by x as they are, and the unit's scale and min are applied once per row:
//     s sum q x + m sum x.
//   1 dequantize: Y[r, c] = W[o_r, c] as f32 for output rows o_r = IDS[r] (embed) or
//     row0 + r (a block of rows for the prefill GEMM); one invocation per 8 columns of a row,
//     so that neighbouring invocations write neighbouring 32 bytes (two vec4 stores). One
//     invocation per 32-column unit with scalar stores 128 bytes apart ran at ~270 GB/s on an
//     H200 (run 54), 16% of the 7B's prefill.
//   2 dequantize to f16 (packHalf2x16 of MODE 1's values), for matmul_coopmat.comp: one uvec4
//     store per invocation; the host asks for it only when cols % 8 == 0.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
#include "tiled_codes.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint MODE = 0;
layout(constant_id = 1) const uint NB = 1;
layout(constant_id = 2) const uint RW = 64;
layout(binding = 1) readonly buffer BT { uvec2 TAB[]; };  // per tile: (bits, byte offset / 16)
layout(binding = 2) readonly buffer BX { float X[]; };
layout(binding = 2) readonly buffer BX4 { vec4 X4[]; };
layout(binding = 3) buffer BY { float Y[]; };
layout(binding = 3) buffer BY4 { vec4 Y4[]; };
layout(binding = 3) buffer BYH { uvec4 YH8[]; };  // MODE 2: 8 halves per element
layout(binding = 4) readonly buffer BI { int IDS[]; };
layout(push_constant) uniform P {
  uint rows, cols, R, C, G, tiles_c, accumulate, n_out, row0, use_ids;
} p;

// Codes 8 q + k of the unit, k < 8, P bits each, from the plane at word `at` (the unit's
// first word): they sit in word (8 q + k) / (32 / P) = q P / 4 + k P / 32 (loaded directly, so
// that no array is indexed by q), at bit CODE_POS (tiled_codes.glsl).
#define PLANE_CODE8(at, P_, k) \
  ((W[(at) + (q * (P_)) / 4u + ((k) * (P_)) / 32u] >> CODE_POS(P_, 8u * q + (k))) & ((1u << (P_)) - 1u))

#define DECODE(P0_, P1_)                                                              \
  [[unroll]] for (uint k = 0; k < 8u; ++k) {                                          \
    uint c = PLANE_CODE8(base + rec * (P0_), P0_, k);                                 \
    if ((P1_) > 0u) c |= PLANE_CODE8(b1 + rec * max(P1_, 1u), max(P1_, 1u), k) << (P0_); \
    wv[k] = fma(float(c), s, m);                                                      \
  }

// Weights 8 q .. 8 q + 7 of unit u of row `row` of the tile at word `base` (rows_t rows,
// `units` units and `groups` scale groups per row).
void unit_weights(uint bits, uint base, uint rows_t, uint units, uint groups, uint row, uint u, uint q,
                  out float wv[8]) {
  const uint rec = row * units + u;
  if (bits == 16u) {
    const uvec4 v = W4[(base + rec * 16u) / 4u + q];
    [[unroll]] for (uint c = 0; c < 4u; ++c) {
      const vec2 h = unpackHalf2x16(v[c]);
      wv[2u * c] = h.x;
      wv[2u * c + 1u] = h.y;
    }
    return;
  }
  const uint p0 = bits == 2u || bits == 3u ? 2u : bits == 8u ? 8u : 4u, p1 = bits - p0;
  const uint b1 = base + pad4(rows_t * units * p0);
  const uint bs = b1 + pad4(rows_t * units * p1);
  const vec2 sm = unpackHalf2x16(W[bs + row * groups + u / (p.G / 32u)]);
  const float s = sm.x, m = sm.y;
  switch (bits) {
    case 2u: DECODE(2u, 0u) break;
    case 3u: DECODE(2u, 1u) break;
    case 4u: DECODE(4u, 0u) break;
    case 5u: DECODE(4u, 1u) break;
    case 6u: DECODE(4u, 2u) break;
    default: DECODE(8u, 0u) break;  // 8 (upload refuses any other bitwidth)
  }
}

// ---- MODE 0: the matvec --------------------------------------------------------------------
//
// x[base + c .. + 3]: one aligned vec4 load inside the matrix (cols % 4 == 0), else scalar
// loads reading 0 past cols (the padding columns of the last unit contribute nothing).
vec4 load_x4(uint base, uint c, bool vec_x) {
  if (vec_x && c + 4u <= p.cols) return X4[(base + c) / 4u];
  const uint last = base + p.cols - 1u;
  return vec4(c < p.cols ? X[min(base + c, last)] : 0.0, c + 1u < p.cols ? X[min(base + c + 1u, last)] : 0.0,
              c + 2u < p.cols ? X[min(base + c + 2u, last)] : 0.0, c + 3u < p.cols ? X[min(base + c + 3u, last)] : 0.0);
}

// The unit's codes of P0 (+ P1) bits as floats f[i] = q_i + C exactly (UNIT_CODE_F), with the
// row's {scale, min}. Every array here has a constant size and constant indices once the loop is
// unrolled, so the compiler keeps them in registers (arrays sized by specialization constants
// can end up in local memory, which is what held the previous kernel to the same time at
// every bitwidth).
#define DECODE_CODES(P0_, P1_)                                                                  \
  {                                                                                             \
    const uint b1 = base + pad4(rows_t * units * (P0_));                                        \
    const uint bs = b1 + pad4(rows_t * units * (P1_));                                          \
    const uint rec = r0 * units + u;                                                            \
    uint w0[P0_];                                                                               \
    uint w1[max(P1_, 1u)];                                                                      \
    LOAD_PLANE(w0, base + rec * (P0_), P0_)                                                     \
    if ((P1_) > 0u) { LOAD_PLANE(w1, b1 + rec * max(P1_, 1u), max(P1_, 1u)) }                   \
    sm = unpackHalf2x16(W[bs + r0 * groups + gi]);                                              \
    cf = UNIT_CODE_OFFSET(P0_, P1_);                                                            \
    [[unroll]] for (uint i = 0; i < 32u; ++i) {                                                 \
      f[i] = UNIT_CODE_F(P0_, P1_, w0, w1, i);                                                   \
    }                                                                                           \
  }

// An f16 tile's unit: the 32 halves as they are (C = 0, scale 1, min 0).
#define DECODE_F16()                                                                            \
  {                                                                                             \
    uint w0[16];                                                                                \
    LOAD_PLANE(w0, base + (r0 * units + u) * 16u, 16u)                                          \
    sm = vec2(1.0, 0.0);                                                                        \
    cf = 0.0;                                                                                   \
    [[unroll]] for (uint i = 0; i < 16u; ++i) {                                                 \
      const vec2 h = unpackHalf2x16(w0[i]);                                                     \
      f[2u * i] = h.x;                                                                          \
      f[2u * i + 1u] = h.y;                                                                     \
    }                                                                                           \
  }

// Rows of x per pass over the weights: 1 when NB = 1 (then the code below folds to scalars),
// else 4: the codes are decoded once for 4 rows of x (NB = 5..8 takes two passes). A constant,
// not NB itself, so that the arrays below keep a constant size.
const uint JB = NB == 1u ? 1u : 4u;
shared float part_[256 * 4];

// MODE 0. Invocation t = 32 g + l of a workgroup: group g = rg KG + kg, lane l = 4 r + u0.
// Rows: the workgroup takes RW rows of one tile strip, row group rg the 8 rows from 8 rg, lane
// l the row l / 4 of them (so a group's 32 lanes read 8 consecutive rows x 4 units of a tile:
// one contiguous run of records per load). Columns: K group kg takes every KG-th tile of the
// strip, lane l the units u0, u0 + 4, ... of each. Every lane of a group works on the same tile
// at the same time, so the bitwidth switch is uniform across the group whatever the mix of
// bitwidths. Partial sums (4 units x KG tiles per row) are added in a fixed order:
// deterministic.
void matvec() {
  const uint KG = 64u / RW;
  const uint t = gl_LocalInvocationIndex, g = t / 32u, l = t % 32u;
  const uint rg = g / KG, kg = g % KG, u0 = l % 4u;
  const uint chunks = (p.R + RW - 1u) / RW;
  const uint tr = gl_WorkGroupID.x / chunks, sub = gl_WorkGroupID.x % chunks;
  const uint rows_t = min(p.R, p.rows - tr * p.R);
  const uint r0 = sub * RW + rg * 8u + l / 4u;
  const bool vec_x = p.cols % 4u == 0u;
  const uint o_end = min(RW, rows_t - min(rows_t, sub * RW));
  [[dont_unroll]] for (uint j0 = 0; j0 < NB; j0 += JB) {
    vec4 acc = vec4(0.0);  // a vector: registers even if a loop over jj stays rolled
    if (r0 < rows_t) {
      for (uint tc = kg; tc < p.tiles_c; tc += KG) {
        const uvec2 tile = TAB[tr * p.tiles_c + tc];
        const uint cols_t = min(p.C, p.cols - tc * p.C);
        const uint units = (cols_t + 31u) / 32u, groups = (units * 32u + p.G - 1u) / p.G;
        const uint base = tile.y * 4u;
        for (uint u = u0; u < units; u += 4u) {
          const uint c0 = tc * p.C + u * 32u, gi = u / (p.G / 32u);
          float f[32], cf;
          vec2 sm;
          switch (tile.x) {
            case 2u: DECODE_CODES(2u, 0u) break;
            case 3u: DECODE_CODES(2u, 1u) break;
            case 4u: DECODE_CODES(4u, 0u) break;
            case 5u: DECODE_CODES(4u, 1u) break;
            case 6u: DECODE_CODES(4u, 2u) break;
            case 8u: DECODE_CODES(8u, 0u) break;
            default: DECODE_F16() break;  // 16 (upload refuses any other bitwidth)
          }
          [[unroll]] for (uint jj = 0; jj < 4u; ++jj) {
            if (jj < JB) {
              const uint xb = min(j0 + jj, NB - 1u) * p.cols;  // past NB: a repeated row, not stored
              float d = 0.0, sx = 0.0;
              [[unroll]] for (uint q4 = 0; q4 < 8u; ++q4) {
                const vec4 xv = load_x4(xb, c0 + 4u * q4, vec_x);
                sx += (xv.x + xv.y) + (xv.z + xv.w);
                d = fma(f[4u * q4], xv.x, d);
                d = fma(f[4u * q4 + 1u], xv.y, d);
                d = fma(f[4u * q4 + 2u], xv.z, d);
                d = fma(f[4u * q4 + 3u], xv.w, d);
              }
              acc[jj] += fma(sm.x, d - cf * sx, sm.y * sx);  // s (sum (q + C) x - C sum x) + m sum x
            }
          }
        }
      }
    }
    [[unroll]] for (uint jj = 0; jj < 4u; ++jj)
      if (jj < JB) part_[t * JB + jj] = acc[jj];
    barrier();
    for (uint o = t; o < o_end * JB; o += 256u) {
      const uint lr = o / JB, jj = o % JB, j = j0 + jj;
      if (j >= NB) continue;
      const uint rg_ = lr / 8u, lq = lr % 8u;
      float s = 0.0;
      for (uint kq = 0; kq < KG; ++kq)
        for (uint uu = 0; uu < 4u; ++uu) s += part_[((rg_ * KG + kq) * 32u + lq * 4u + uu) * JB + jj];
      const uint yi = j * p.rows + tr * p.R + sub * RW + lr;
      Y[yi] = (p.accumulate != 0u ? Y[yi] : 0.0) + s;
    }
    barrier();
  }
}

void dequantize() {
  const uint eights_total = (p.cols + 7u) / 8u, ept = p.C / 8u;
  const uint id = flat_index();
  if (id >= p.n_out * eights_total) return;
  const uint r = id / eights_total, eg = id % eights_total;
  const uint o = p.use_ids != 0u ? uint(IDS[r]) : p.row0 + r;
  const uint tr = o / p.R, row = o % p.R, tc = eg / ept, e = eg % ept;
  const uvec2 tile = TAB[tr * p.tiles_c + tc];
  const uint rows_t = min(p.R, p.rows - tr * p.R), cols_t = min(p.C, p.cols - tc * p.C);
  const uint units = (cols_t + 31u) / 32u, groups = (units * 32u + p.G - 1u) / p.G;
  float wv[8];
  unit_weights(tile.x, tile.y * 4u, rows_t, units, groups, row, e / 4u, e % 4u, wv);
  const uint c0 = tc * p.C + e * 8u, at = r * p.cols + c0;
  if (MODE == 2u) {
    YH8[at / 8u] = uvec4(packHalf2x16(vec2(wv[0], wv[1])), packHalf2x16(vec2(wv[2], wv[3])),
                         packHalf2x16(vec2(wv[4], wv[5])), packHalf2x16(vec2(wv[6], wv[7])));
    return;
  }
  if (p.cols % 4u == 0u && c0 + 8u <= p.cols) {  // 16-byte aligned: every row starts at a multiple of 4
    Y4[at / 4u] = vec4(wv[0], wv[1], wv[2], wv[3]);
    Y4[at / 4u + 1u] = vec4(wv[4], wv[5], wv[6], wv[7]);
    return;
  }
  [[unroll]] for (uint i = 0; i < 8u; ++i)
    if (c0 + i < p.cols) Y[at + i] = wv[i];
}

void main() {
  if (MODE == 0u)
    matvec();
  else
    dequantize();
}
