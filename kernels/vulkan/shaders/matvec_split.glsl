// The split tiled matvec's work split, loads and reductions, shared by matvec_tiled.comp (f32
// arithmetic) and matvec_dot.comp (integer dot products). The includer defines, before
// including this file:
//   ROW_DOT(P0, P1, w0, w1, sw, j)  acc[j] += the invocation's unit of row j (plane words w0, w1,
//                                   scale word sw), rows past rows_t dropped;
//   LOAD_UNIT_X(P0, P1)             the unit's x for tiles of those plane widths, as ROW_DOT reads it.
// Map, numerics of the finish and why the loads are arranged so: matvec_tiled.comp's top comment.
#ifndef SBITS_MATVEC_SPLIT_GLSL
#define SBITS_MATVEC_SPLIT_GLSL
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "tiled_codes.glsl"
layout(local_size_x = 128) in;

// Constants, not specialization constants: arrays sized by specialization constants were left
// in memory by the NVIDIA driver (NOTES.md), and glslc unrolls no loop whose trip count or body
// depends on one (then the arrays indexed in it stay in memory too).
const uint STEPS = 4u;                 // rows per invocation per tile
const uint KGROUPS = 8u / STEPS;       // groups of 32 per 64-row chunk
const uint SLOTS = 4u / KGROUPS;       // chunks per workgroup
const uint MAX_TILES = 64u;            // tiles per chunk at most (the host splits wider rows)
// Tuning switch (it selects code outside the unrolled loops). AHEAD = 0 needs 94 registers
// instead of 128 on NVIDIA's driver but was slower there (NOTES.md); GPUs with fewer registers
// may differ.
layout(constant_id = 0) const uint AHEAD = 1u;  // 0: 2- and 3-bit tiles loaded in place too
// 1: rows of x on grid z (n > 1). A separate pipeline for n = 1, where the row offsets fold away:
// computed from grid z there, the 7B decode ran 4% slower (H200, run 50).
layout(constant_id = 1) const uint ROWS_Z = 0u;

uint x_row() { return ROWS_Z != 0u ? gl_WorkGroupID.z : 0u; }

layout(binding = 1) readonly buffer BT { uvec2 TAB[]; };  // per tile: (bits, byte offset / 16)
layout(binding = 2) readonly buffer BX4 { vec4 X4[]; };
layout(binding = 3) buffer BY { float Y[]; };
layout(binding = 4) coherent buffer BP { float PART[]; };  // [split][row] partial sums
layout(binding = 5) coherent buffer BC { uint CNT[]; };    // per strip: splits finished
layout(push_constant) uniform P { uint rows, tiles_c, accumulate, tiles_per_chunk, splits; } p;

shared uvec2 tab_[SLOTS * MAX_TILES];
shared float red_[SLOTS * 64u * 4u];
shared bool last_;

uint row_of(uint rg, uint j, uint l) { return 8u * (rg * STEPS + j) + l / 4u; }

// A tile of P0 (+ P1) bit codes loaded in place (4, 5, 6 and 8 bits; 2 and 3 without AHEAD).
#define TILE_IN_PLACE(P0_, P1_)                                                  \
  {                                                                              \
    const uint b1 = base + pad4(rows_t * 4u * (P0_));                            \
    const uint bs = b1 + pad4(rows_t * 4u * (P1_));                              \
    [[unroll]] for (uint j = 0; j < STEPS; ++j) {                                \
      const uint r = min(row_of(rg, j, l), rows_t - 1u), rec = r * 4u + u;       \
      uint w0[P0_];                                                              \
      uint w1[max(P1_, 1u)];                                                     \
      LOAD_PLANE(w0, base + rec * (P0_), P0_)                                    \
      if ((P1_) > 0u) { LOAD_PLANE(w1, b1 + rec * max(P1_, 1u), max(P1_, 1u)) }  \
      ROW_DOT(P0_, P1_, w0, w1, W[bs + r], j)                                    \
    }                                                                            \
  }

// A 2- or 3-bit tile's words for the invocation's rows, per row {plane 0 word 0, word 1, plane 1
// word, scale}: loaded a tile ahead (`ahead`).
#define LOAD_AHEAD(tile_)                                                        \
  if (AHEAD != 0u && ((tile_).x == 2u || (tile_).x == 3u)) {                     \
    const uint nb = (tile_).y * 4u, np1 = (tile_).x - 2u;                        \
    const uint b1 = nb + pad4(rows_t * 8u), bs = b1 + pad4(rows_t * 4u * np1);   \
    [[unroll]] for (uint j = 0; j < STEPS; ++j) {                                \
      const uint r = min(row_of(rg, j, l), rows_t - 1u), rec = r * 4u + u;       \
      const uvec2 a = W2[(nb + rec * 2u) / 2u];                                  \
      ahead[j] = uvec4(a.x, a.y, np1 != 0u ? W[b1 + rec] : 0u, W[bs + r]);       \
    }                                                                            \
  }

#define TILE_AHEAD(P1_)                                                          \
  [[unroll]] for (uint j = 0; j < STEPS; ++j) {                                  \
    const uint w0[2] = uint[2](cur[j].x, cur[j].y);                              \
    const uint w1[1] = uint[1](cur[j].z);                                        \
    ROW_DOT(2u, P1_, w0, w1, cur[j].w, j)                                        \
  }

// An f16 tile (the quantizer keeps a few exact): f32 products with x, no scale.
#define TILE_F16()                                                               \
  [[unroll]] for (uint j = 0; j < STEPS; ++j) {                                  \
    const uint row = row_of(rg, j, l), r = min(row, rows_t - 1u);                \
    uint w0[16];                                                                 \
    LOAD_PLANE(w0, base + (r * 4u + u) * 16u, 16u)                               \
    float d = 0.0;                                                               \
    [[unroll]] for (uint i = 0; i < 16u; ++i) {                                  \
      const vec2 h = unpackHalf2x16(w0[i]);                                      \
      d = fma(h.y, xv[i / 2u][(i % 2u) * 2u + 1u], fma(h.x, xv[i / 2u][(i % 2u) * 2u], d)); \
    }                                                                            \
    if (row < rows_t) acc[j] += d;                                               \
  }

// The unit's 32 values of x (xv) and their sum (sx).
#define LOAD_X()                                                                 \
  vec4 xv[8];                                                                    \
  float sx = 0.0;                                                                \
  [[unroll]] for (uint k = 0; k < 8u; ++k) {                                     \
    xv[k] = X4[xb + k];                                                          \
    sx += (xv[k].x + xv[k].y) + (xv[k].z + xv[k].w);                             \
  }

// A 2- or 3-bit tile, loaded ahead or (AHEAD = 0) in place.
#define TILE_2_3(P1_)                                                            \
  {                                                                              \
    LOAD_UNIT_X(2u, P1_)                                                         \
    if (AHEAD != 0u) TILE_AHEAD(P1_) else TILE_IN_PLACE(2u, P1_)                 \
  }

// The strip's row sums: the workgroup's (chunks and units added in order) to y, or with splits
// to PART, of which the last workgroup of the strip to finish adds the splits in order.
void finish(uint t, uint strip, uint rows_t) {
  float s = 0.0;
  if (t < rows_t)
    for (uint k = 0; k < SLOTS * 4u; ++k) s += red_[(k / 4u * 64u + t) * 4u + k % 4u];
  const uint xr = x_row(), row = strip * 64u + t, yi = xr * p.rows + row;
  if (p.splits == 1u) {
    if (t < rows_t) Y[yi] = (p.accumulate != 0u ? Y[yi] : 0.0) + s;
    return;
  }
  if (t < rows_t) PART[(xr * p.splits + gl_WorkGroupID.y) * p.rows + row] = s;
  // The partial sums are visible device-wide before the counter says so (coherent + barrier),
  // and the last workgroup reads them only after it has seen the count.
  memoryBarrierBuffer();
  barrier();
  const uint counter = xr * gl_NumWorkGroups.x + strip;
  if (t == 0u) last_ = atomicAdd(CNT[counter], 1u) == p.splits - 1u;
  barrier();
  if (!last_) return;
  memoryBarrierBuffer();
  if (t < rows_t) {
    float a = 0.0;
    for (uint k = 0; k < p.splits; ++k) a += PART[(xr * p.splits + k) * p.rows + row];
    Y[yi] = (p.accumulate != 0u ? Y[yi] : 0.0) + a;
  }
  if (t == 0u) CNT[counter] = 0u;  // ready for the next dispatch
}

void main() {
  const uint t = gl_LocalInvocationIndex, g = t / 32u, l = t % 32u;
  const uint rg = g % KGROUPS, slot = g / KGROUPS, u = l % 4u;
  const uint strip = gl_WorkGroupID.x, rows_t = min(64u, p.rows - strip * 64u);
  const uint tpc = p.tiles_per_chunk, chunk0 = gl_WorkGroupID.y * SLOTS;
  for (uint i = t; i < SLOTS * tpc; i += 128u) {
    const uint tc = (chunk0 + i / tpc) * tpc + i % tpc;
    if (tc < p.tiles_c) tab_[i / tpc * MAX_TILES + i % tpc] = TAB[strip * p.tiles_c + tc];
  }
  barrier();
  const uint tc0 = min(p.tiles_c, (chunk0 + slot) * tpc), ntiles = min(p.tiles_c, tc0 + tpc) - tc0;
  float acc[STEPS];
  uvec4 ahead[STEPS];
  [[unroll]] for (uint j = 0; j < STEPS; ++j) {
    acc[j] = 0.0;
    ahead[j] = uvec4(0u);
  }
  if (ntiles > 0u) LOAD_AHEAD(tab_[slot * MAX_TILES])
  for (uint i = 0; i < ntiles; ++i) {
    const uvec2 tile = tab_[slot * MAX_TILES + i];
    const uint base = tile.y * 4u;
    uvec4 cur[STEPS];
    [[unroll]] for (uint j = 0; j < STEPS; ++j) cur[j] = ahead[j];
    if (i + 1u < ntiles) LOAD_AHEAD(tab_[slot * MAX_TILES + i + 1u])
    // The tile column; the unit's x (row x_row() of x), as vec4s.
    const uint tcol = tc0 + i, xb = (x_row() * p.tiles_c + tcol) * 32u + u * 8u;
    switch (tile.x) {
      case 2u: TILE_2_3(0u) break;
      case 3u: TILE_2_3(1u) break;
      case 4u: { LOAD_UNIT_X(4u, 0u) TILE_IN_PLACE(4u, 0u) } break;
      case 5u: { LOAD_UNIT_X(4u, 1u) TILE_IN_PLACE(4u, 1u) } break;
      case 6u: { LOAD_UNIT_X(4u, 2u) TILE_IN_PLACE(4u, 2u) } break;
      case 8u: { LOAD_UNIT_X(8u, 0u) TILE_IN_PLACE(8u, 0u) } break;
      default: { LOAD_X() TILE_F16() } break;  // 16 (upload refuses any other bitwidth)
    }
  }
  [[unroll]] for (uint j = 0; j < STEPS; ++j) red_[(slot * 64u + row_of(rg, j, l)) * 4u + u] = acc[j];
  barrier();
  finish(t, strip, rows_t);
}

#endif
