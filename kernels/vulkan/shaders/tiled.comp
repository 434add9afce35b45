#version 450
// Tiled mixed-bitwidth weights (formats/SBITS.md "Layout 16"; kernels/quant/tiled.h).
// MODE (specialization constant 0):
//   0 matvec: y[j, o] (=|+=) sum_i x[j, i] W[o, i] for NB (constant 1) <= 8 rows of x.
//     One workgroup per strip of 64 rows of one tile row (a whole tile-row strip for R = 64),
//     optionally one of `splits` ranges of tile columns (split-K; partial sums then go to
//     Y[split][j][o] and elementwise.comp's split-K pass adds them in a fixed order). Four
//     invocations per row walk its units: invocation t owns (row t / 4, unit t % 4 + 4 k), so
//     the 64 x 4 units of a 128-column tile are 256 consecutive records of each plane: every
//     load is a coalesced, aligned 16-byte (b = 4/5/6), 8-byte (b = 2/3) or 2 x 16-byte (b = 8)
//     load. A tile's bitwidth is uniform over the workgroup: one switch per unit, the codes
//     decoded in registers with constant shifts, no per-weight branching.
//   1 dequantize: Y[r, c] = W[o_r, c] as f32 for output rows o_r = IDS[r] (embed) or
//     row0 + r (a block of rows for the prefill GEMM); one invocation per (row, unit).
// x is read from a zero-padded copy with a row stride `ld` (a multiple of 32 columns), so a
// unit's 32 inputs are 8 aligned vec4 loads and padding columns (code 0 -> min) meet zeros.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint MODE = 0;
layout(constant_id = 1) const uint NB = 1;
layout(binding = 0) readonly buffer BW { uint W[]; };
layout(binding = 0) readonly buffer BW2 { uvec2 W2[]; };
layout(binding = 0) readonly buffer BW4 { uvec4 W4[]; };
layout(binding = 1) readonly buffer BT { uvec2 TAB[]; };  // per tile: (bits, byte offset / 16)
layout(binding = 2) readonly buffer BX { vec4 X4[]; };
layout(binding = 3) buffer BY { float Y[]; };
layout(binding = 4) readonly buffer BI { int IDS[]; };
layout(push_constant) uniform P {
  uint rows, cols, R, C, G, tiles_c, ld, accumulate, splits, tiles_per_split, n_out, row0, use_ids;
} p;

uint pad4(uint words) { return (words + 3u) & ~3u; }

// Code i of a unit from plane words w (P bits per code; codec_plane.h: even codes in the low
// half-word, odd codes in the high half-word).
#define PLANE_CODE(w, P_, i) \
  ((w[(i) / (32u / (P_))] >> ((P_) * (((i) % (32u / (P_))) / 2u + (((i) % (32u / (P_))) % 2u) * (16u / (P_))))) & ((1u << (P_)) - 1u))

#define DECODE(P0_, P1_)                                        \
  [[unroll]] for (uint i = 0; i < 32u; ++i) {                   \
    uint q = PLANE_CODE(w0, P0_, i);                            \
    if ((P1_) > 0u) q |= PLANE_CODE(w1, max(P1_, 1u), i) << (P0_); \
    wv[i] = fma(float(q), s, m);                                \
  }

// The 32 weights of unit u of row `row` of the tile at word `base` (rows_t rows, `units`
// units and `groups` scale groups per row).
void unit_weights(uint bits, uint base, uint rows_t, uint units, uint groups, uint row, uint u, out float wv[32]) {
  const uint rec = row * units + u;
  if (bits == 16u) {
    [[unroll]] for (uint k = 0; k < 4u; ++k) {
      const uvec4 v = W4[(base + rec * 16u) / 4u + k];
      [[unroll]] for (uint c = 0; c < 4u; ++c) {
        const vec2 h = unpackHalf2x16(v[c]);
        wv[8u * k + 2u * c] = h.x;
        wv[8u * k + 2u * c + 1u] = h.y;
      }
    }
    return;
  }
  const uint p0 = bits == 2u || bits == 3u ? 2u : bits == 8u ? 8u : 4u, p1 = bits - p0;
  const uint b1 = base + pad4(rows_t * units * p0);
  const uint bs = b1 + pad4(rows_t * units * p1);
  const uint gu = p.G / 32u;
  const vec2 sm = unpackHalf2x16(W[bs + row * groups + u / gu]);
  const float s = sm.x, m = sm.y;
  uint w0[8];
  uint w1[2];
  switch (bits) {
    case 2u: {
      const uvec2 a = W2[(base + rec * 2u) / 2u];
      w0[0] = a.x; w0[1] = a.y;
      DECODE(2u, 0u)
      break;
    }
    case 3u: {
      const uvec2 a = W2[(base + rec * 2u) / 2u];
      w0[0] = a.x; w0[1] = a.y;
      w1[0] = W[b1 + rec];
      DECODE(2u, 1u)
      break;
    }
    case 4u: {
      const uvec4 a = W4[(base + rec * 4u) / 4u];
      w0[0] = a.x; w0[1] = a.y; w0[2] = a.z; w0[3] = a.w;
      DECODE(4u, 0u)
      break;
    }
    case 5u: {
      const uvec4 a = W4[(base + rec * 4u) / 4u];
      w0[0] = a.x; w0[1] = a.y; w0[2] = a.z; w0[3] = a.w;
      w1[0] = W[b1 + rec];
      DECODE(4u, 1u)
      break;
    }
    case 6u: {
      const uvec4 a = W4[(base + rec * 4u) / 4u];
      w0[0] = a.x; w0[1] = a.y; w0[2] = a.z; w0[3] = a.w;
      const uvec2 c = W2[(b1 + rec * 2u) / 2u];
      w1[0] = c.x; w1[1] = c.y;
      DECODE(4u, 2u)
      break;
    }
    default: {  // 8 (upload refuses any other bitwidth)
      const uvec4 a = W4[(base + rec * 8u) / 4u], b = W4[(base + rec * 8u) / 4u + 1u];
      w0[0] = a.x; w0[1] = a.y; w0[2] = a.z; w0[3] = a.w;
      w0[4] = b.x; w0[5] = b.y; w0[6] = b.z; w0[7] = b.w;
      DECODE(8u, 0u)
      break;
    }
  }
}

shared float part_[256 * NB];

void matvec() {
  const uint t = gl_LocalInvocationIndex;
  const uint chunks = (p.R + 63u) / 64u;
  const uint tr = gl_WorkGroupID.x / chunks, sub = gl_WorkGroupID.x % chunks;
  const uint rows_t = min(p.R, p.rows - tr * p.R);
  const uint row = sub * 64u + t / 4u, lane = t % 4u;
  const bool in_tile = row < rows_t;
  float acc[NB];
  [[unroll]] for (uint j = 0; j < NB; ++j) acc[j] = 0.0;
  const uint tc0 = gl_WorkGroupID.y * p.tiles_per_split, tc1 = min(p.tiles_c, tc0 + p.tiles_per_split);
  if (in_tile) {
    for (uint tc = tc0; tc < tc1; ++tc) {
      const uvec2 tile = TAB[tr * p.tiles_c + tc];
      const uint cols_t = min(p.C, p.cols - tc * p.C);
      const uint units = (cols_t + 31u) / 32u, groups = (units * 32u + p.G - 1u) / p.G;
      for (uint u = lane; u < units; u += 4u) {
        float wv[32];
        unit_weights(tile.x, tile.y * 4u, rows_t, units, groups, row, u, wv);
        const uint xo = (tc * p.C + u * 32u) / 4u;
        [[unroll]] for (uint j = 0; j < NB; ++j) {
          float a = acc[j];
          [[unroll]] for (uint q = 0; q < 8u; ++q) {
            const vec4 x = X4[j * (p.ld / 4u) + xo + q];
            a += wv[4u * q] * x.x + wv[4u * q + 1u] * x.y + wv[4u * q + 2u] * x.z + wv[4u * q + 3u] * x.w;
          }
          acc[j] = a;
        }
      }
    }
  }
  [[unroll]] for (uint j = 0; j < NB; ++j) part_[t * NB + j] = acc[j];
  barrier();
  if (!in_tile || lane != 0u) return;
  const uint o = tr * p.R + row;
  [[unroll]] for (uint j = 0; j < NB; ++j) {
    const float s = ((part_[t * NB + j] + part_[(t + 1u) * NB + j]) + part_[(t + 2u) * NB + j]) + part_[(t + 3u) * NB + j];
    if (p.splits > 1u) {
      Y[(gl_WorkGroupID.y * NB + j) * p.rows + o] = s;
    } else {
      const uint yi = j * p.rows + o;
      Y[yi] = (p.accumulate != 0u ? Y[yi] : 0.0) + s;
    }
  }
}

void dequantize() {
  const uint units_total = (p.cols + 31u) / 32u, upt = p.C / 32u;
  const uint id = flat_index();
  if (id >= p.n_out * units_total) return;
  const uint r = id / units_total, ug = id % units_total;
  const uint o = p.use_ids != 0u ? uint(IDS[r]) : p.row0 + r;
  const uint tr = o / p.R, row = o % p.R, tc = ug / upt, u = ug % upt;
  const uvec2 tile = TAB[tr * p.tiles_c + tc];
  const uint rows_t = min(p.R, p.rows - tr * p.R), cols_t = min(p.C, p.cols - tc * p.C);
  const uint units = (cols_t + 31u) / 32u, groups = (units * 32u + p.G - 1u) / p.G;
  float wv[32];
  unit_weights(tile.x, tile.y * 4u, rows_t, units, groups, row, u, wv);
  const uint c0 = tc * p.C + u * 32u;
  for (uint i = 0; i < 32u; ++i)
    if (c0 + i < p.cols) Y[r * p.cols + c0 + i] = wv[i];
}

void main() {
  if (MODE == 0u)
    matvec();
  else
    dequantize();
}
