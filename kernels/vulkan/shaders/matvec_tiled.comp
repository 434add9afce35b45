#version 450
// The tiled matvec for GPUs at n = 1: y (=|+=) W x for tiled weights of 64 x 128 tiles with one
// scale group per tile row and whole tiles across (cols % 128 == 0), the shape sbits-quantize
// writes (vk_matmul.cpp falls back to tiled.comp for any other shape, for n > 1, and on CPU
// drivers unless asked).
//
// Why a second kernel: tiled.comp gives each invocation one row and walks a row's tiles one
// after another, so every tile costs a dependent round trip to memory (header, then codes), and
// it loads 32 floats of x per 32 weights. Here (the CUDA backend's variant 6 scheduling,
// kernels/cuda/tiled_dp4a.cu, with f32 arithmetic instead of dp4a):
// - an invocation owns one 32-column unit of STEPS rows of a tile: x is loaded once per tile for
//   STEPS rows, and the STEPS rows' loads are independent, so they are in flight together;
// - 2- and 3-bit tiles (the bulk of a low-bit allocation) are loaded one tile ahead into
//   registers while the current tile computes;
// - the tile headers of a workgroup's chunks are read once into shared memory;
// - the columns are split across workgroups (grid y) so that small matrices still fill the
//   device; the last workgroup of a strip to finish adds the splits' partial sums in a fixed
//   order (a counter per strip), so results do not depend on timing.
//
// Map: workgroup (x, y) = 64-row strip x, chunks y SLOTS .. y SLOTS + SLOTS - 1 of its tile
// columns (tiles_per_chunk each). Invocation t = 32 g + l: row group rg = g % KGROUPS, chunk slot
// g / KGROUPS, unit l % 4, rows 8 (rg STEPS + j) + l / 4 for j < STEPS: for every j the 32
// invocations of a group read 32 consecutive (row, unit) records, one contiguous run per plane.
//
// Numerics: as tiled.comp (codes decoded exactly to q + C, f32 products with x, the row's scale
// and min applied once per unit: s (sum (q + C) x - C sum x) + m sum x).
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

// acc[j] += the invocation's unit of row j from plane words w0 (P0 of them), w1 (P1) and the
// row's scale word, against the unit's x (xv) and its sum sx. Rows past rows_t (a short last
// strip) were loaded as row rows_t - 1 and are dropped here.
#define ROW_DOT(P0_, P1_, w0, w1, sw, j)                                         \
  {                                                                              \
    float d = 0.0;                                                               \
    [[unroll]] for (uint i = 0; i < 32u; ++i)                                    \
      d = fma(UNIT_CODE_F(P0_, P1_, w0, w1, i), xv[i / 4u][i % 4u], d);          \
    const vec2 sm = unpackHalf2x16(sw);                                          \
    if (row_of(rg, j, l) < rows_t)                                               \
      acc[j] += fma(sm.x, d - UNIT_CODE_OFFSET(P0_, P1_) * sx, sm.y * sx);       \
  }

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
    LOAD_X()                                                                     \
    if (AHEAD != 0u) TILE_AHEAD(P1_) else TILE_IN_PLACE(2u, P1_)                 \
  }

// The strip's row sums: the workgroup's (chunks and units added in order) to y, or with splits
// to PART, of which the last workgroup of the strip to finish adds the splits in order.
void finish(uint t, uint strip, uint rows_t) {
  float s = 0.0;
  if (t < rows_t)
    for (uint k = 0; k < SLOTS * 4u; ++k) s += red_[(k / 4u * 64u + t) * 4u + k % 4u];
  const uint row = strip * 64u + t;
  if (p.splits == 1u) {
    if (t < rows_t) Y[row] = (p.accumulate != 0u ? Y[row] : 0.0) + s;
    return;
  }
  if (t < rows_t) PART[gl_WorkGroupID.y * p.rows + row] = s;
  // The partial sums are visible device-wide before the counter says so (coherent + barrier),
  // and the last workgroup reads them only after it has seen the count.
  memoryBarrierBuffer();
  barrier();
  if (t == 0u) last_ = atomicAdd(CNT[strip], 1u) == p.splits - 1u;
  barrier();
  if (!last_) return;
  memoryBarrierBuffer();
  if (t < rows_t) {
    float a = 0.0;
    for (uint k = 0; k < p.splits; ++k) a += PART[k * p.rows + row];
    Y[row] = (p.accumulate != 0u ? Y[row] : 0.0) + a;
  }
  if (t == 0u) CNT[strip] = 0u;  // ready for the next dispatch
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
    const uint xb = (tc0 + i) * 32u + u * 8u;  // the unit's x, as vec4s
    switch (tile.x) {
      case 2u: TILE_2_3(0u) break;
      case 3u: TILE_2_3(1u) break;
      case 4u: { LOAD_X() TILE_IN_PLACE(4u, 0u) } break;
      case 5u: { LOAD_X() TILE_IN_PLACE(4u, 1u) } break;
      case 6u: { LOAD_X() TILE_IN_PLACE(4u, 2u) } break;
      case 8u: { LOAD_X() TILE_IN_PLACE(8u, 0u) } break;
      default: { LOAD_X() TILE_F16() } break;  // 16 (upload refuses any other bitwidth)
    }
  }
  [[unroll]] for (uint j = 0; j < STEPS; ++j) red_[(slot * 64u + row_of(rg, j, l)) * 4u + u] = acc[j];
  barrier();
  finish(t, strip, rows_t);
}
