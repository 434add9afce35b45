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
// Grid z: the row of x (n <= 8): the rows' workgroups read the same weights at about the same
// time, so after the first the weights mostly come from L2.
//
// Numerics: as tiled.comp (codes decoded exactly to q + C, f32 products with x, the row's scale
// and min applied once per unit: s (sum (q + C) x - C sum x) + m sum x).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

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

// f32 arithmetic reads the unit's 32 floats of x whatever the tile's planes.
#define LOAD_UNIT_X(P0_, P1_) LOAD_X()

#include "matvec_split.glsl"
