#version 450
// Rows of x (cols = 128 tiles_c floats; row r = grid y, OP 0 only) in the integer form
// matvec_dot.comp reads: per 32
// columns x ~ d (hi + lo / 256) with int8 digits and d = max |x| / 127, the digits of each
// 128-column tile column laid out for the four plane widths (matvec_dot.comp's top comment), and
// {d / 256, sum x} per unit after all tile columns. One workgroup per tile column. OP
// (specialization constant 0) says where x comes from, so that the op that makes a matvec's x
// can write its digits in the same dispatch instead of a dependent one after it:
//   0 convert:  x = A                                    (Q only)
//   1 rmsnorm:  C = x = A / sqrt(mean(A^2) + eps) * B    (B a dense vector of type WTYPE)
//   2 swiglu:   C = x = silu(A) * B                      (C may alias A)
// rmsnorm reads the whole row in every workgroup (4096 values of a 7B: 16 KB from L2 each), so C
// must not alias A there.
//
// Numerics: s = x 127 / max|x| is within 127 of 0; hi = s rounded to even, lo = (s - hi) 256
// rounded, clamped to +-127, so |x - d (hi + lo / 256)| <= d / 256 = max|x| / 32512. A unit whose
// largest |x| is below 2^-100 (7.9e-31) is taken as zero (127 / max|x| would overflow). rmsnorm
// and swiglu compute C as rmsnorm.comp and elementwise.comp do, the sum of squares in another
// order.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#define WG 128
#include "common.glsl"
layout(local_size_x = WG) in;
layout(constant_id = 0) const uint OP = 0;
layout(constant_id = 1) const uint WTYPE = 0;
layout(binding = 0) readonly buffer BA { float A[]; };
layout(binding = 0) readonly buffer BA4 { vec4 A4[]; };
layout(binding = 1) readonly buffer BB { float B[]; };
layout(binding = 1) readonly buffer BW { uint W[]; };
layout(binding = 2) writeonly buffer BC { float C[]; };
layout(binding = 3) writeonly buffer BQ { uint Q[]; };
layout(push_constant) uniform P { uint tiles_c; float eps; } p;

#define XQ_WORDS Q
#include "xq.glsl"

// 1 / sqrt(mean(A^2) + eps) over the row (width = 128 tiles_c, a multiple of 4): 8 vec4 loads
// per invocation in flight per block of 4096 values.
float rms_scale() {
  const uint n4 = p.tiles_c * 32u;
  float s = 0.0;
  for (uint b = 0; b < n4; b += WG * 8u) {
    vec4 v[8];
    [[unroll]] for (uint k = 0; k < 8u; ++k) {
      const uint i = b + k * WG + gl_LocalInvocationIndex;
      v[k] = i < n4 ? A4[i] : vec4(0.0);
    }
    [[unroll]] for (uint k = 0; k < 8u; ++k) s += dot(v[k], v[k]);
  }
  return 1.0 / sqrt(wg_sum(s) / float(n4 * 4u) + p.eps);
}

void main() {
  const uint tc = gl_WorkGroupID.x, r = gl_WorkGroupID.y;
  const uint col = r * p.tiles_c * WG + tc * WG + gl_LocalInvocationIndex;
  float v;
  if (OP == 1u) {
    v = A[col] * rms_scale() * DENSE_AT(W, WTYPE, col);
  } else if (OP == 2u) {
    v = silu(A[col]) * B[col];
  } else {
    v = A[col];
  }
  if (OP != 0u) C[col] = v;
  xq_store(p.tiles_c, r * p.tiles_c * XQ_TILE_WORDS, tc, v);
}
