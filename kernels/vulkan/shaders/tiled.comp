#version 450
// Tiled mixed-bitwidth weights (formats/SBITS.md "Layout 16"; kernels/quant/tiled.h).
// MODE (specialization constant 0):
//   0 matvec: y[j, o] (=|+=) sum_i x[j, i] W[o, i] for NB (constant 1) <= 8 rows of x.
//     A workgroup of 256 takes RW (constant 2) rows of one tile row; the KQ = 64 / RW
//     invocation quads of a row walk every KQ-th tile of the strip, the 4 invocations of a
//     quad the units of the tile (t owns unit t % 4 + 4 k). So with RW = 64 (CPU drivers: few
//     workgroups) a whole 64-row tile strip is one workgroup reading 256 consecutive records of
//     each plane; with RW = 8 (GPUs: enough workgroups to fill the device without a split-K
//     pass) a warp reads 8 tiles x 4 units of one row. Every code load is one aligned 16-byte
//     (b = 4/5/6), 8-byte (b = 2/3) or 2 x 16-byte (b = 8) load. A tile's bitwidth is one
//     switch per unit; the codes are decoded in registers with constant shifts, no per-weight
//     branching. The 4 KQ partial sums of a row are added in a fixed order (deterministic).
//   1 dequantize: Y[r, c] = W[o_r, c] as f32 for output rows o_r = IDS[r] (embed) or
//     row0 + r (a block of rows for the prefill GEMM); one invocation per (row, unit).
// x is read with aligned vec4 loads when cols % 4 == 0 and they lie inside the matrix;
// otherwise (the end of a ragged row) with scalar loads that give 0 past cols, so the padding
// columns (code 0 -> min) contribute nothing.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint MODE = 0;
layout(constant_id = 1) const uint NB = 1;
layout(constant_id = 2) const uint RW = 64;
layout(binding = 0) readonly buffer BW { uint W[]; };
layout(binding = 0) readonly buffer BW2 { uvec2 W2[]; };
layout(binding = 0) readonly buffer BW4 { uvec4 W4[]; };
layout(binding = 1) readonly buffer BT { uvec2 TAB[]; };  // per tile: (bits, byte offset / 16)
layout(binding = 2) readonly buffer BX { float X[]; };
layout(binding = 2) readonly buffer BX4 { vec4 X4[]; };
layout(binding = 3) buffer BY { float Y[]; };
layout(binding = 4) readonly buffer BI { int IDS[]; };
layout(push_constant) uniform P {
  uint rows, cols, R, C, G, tiles_c, accumulate, n_out, row0, use_ids;
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

// x[base + c .. + 3]: one aligned vec4 load inside the matrix (cols % 4 == 0), else scalar
// loads reading 0 past cols (the padding columns of the last unit). Every index into the
// caller's wv stays a constant (unrolled loops), so wv lives in registers.
vec4 load_x4(uint base, uint c, bool vec_x) {
  if (vec_x && c + 4u <= p.cols) return X4[(base + c) / 4u];
  const uint last = base + p.cols - 1u;
  return vec4(c < p.cols ? X[min(base + c, last)] : 0.0, c + 1u < p.cols ? X[min(base + c + 1u, last)] : 0.0,
              c + 2u < p.cols ? X[min(base + c + 2u, last)] : 0.0, c + 3u < p.cols ? X[min(base + c + 3u, last)] : 0.0);
}

void matvec() {
  const uint KQ = 64u / RW;  // tiles in flight per row
  const uint t = gl_LocalInvocationIndex, per_row = 4u * KQ;
  const uint chunks = (p.R + RW - 1u) / RW;
  const uint tr = gl_WorkGroupID.x / chunks, sub = gl_WorkGroupID.x % chunks;
  const uint rows_t = min(p.R, p.rows - tr * p.R);
  const uint row = sub * RW + t / per_row, lane = t % per_row, kq = lane / 4u, u0 = lane % 4u;
  const bool in_tile = row < rows_t;
  const bool vec_x = p.cols % 4u == 0u;
  float acc[NB];
  [[unroll]] for (uint j = 0; j < NB; ++j) acc[j] = 0.0;
  if (in_tile) {
    for (uint tc = kq; tc < p.tiles_c; tc += KQ) {
      const uvec2 tile = TAB[tr * p.tiles_c + tc];
      const uint cols_t = min(p.C, p.cols - tc * p.C);
      const uint units = (cols_t + 31u) / 32u, groups = (units * 32u + p.G - 1u) / p.G;
      for (uint u = u0; u < units; u += 4u) {
        float wv[32];
        unit_weights(tile.x, tile.y * 4u, rows_t, units, groups, row, u, wv);
        const uint c0 = tc * p.C + u * 32u;
        [[unroll]] for (uint j = 0; j < NB; ++j) {
          float a = acc[j];
          [[unroll]] for (uint q = 0; q < 8u; ++q) {
            const vec4 x = load_x4(j * p.cols, c0 + 4u * q, vec_x);
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
    float s = 0.0;
    for (uint l = 0; l < per_row; ++l) s += part_[(t + l) * NB + j];
    const uint yi = j * p.rows + o;
    Y[yi] = (p.accumulate != 0u ? Y[yi] : 0.0) + s;
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
  [[unroll]] for (uint i = 0; i < 32u; ++i)
    if (c0 + i < p.cols) Y[r * p.cols + c0 + i] = wv[i];
}

void main() {
  if (MODE == 0u)
    matvec();
  else
    dequantize();
}
