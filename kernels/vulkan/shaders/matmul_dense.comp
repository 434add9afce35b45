#version 450
// Prefill: Y[j, o0 + o] (=|+=) sum_i X[j, i] W[o, i] for n > 8 rows, a classic shared-memory
// tiled GEMM: a 64 (outputs) x 64 (rows of x) block per workgroup, 16 columns of i at a time,
// each invocation computing 4 x 4 results. W has type T and row stride ldw elements (T = f32
// when it is a block of tiled rows dequantized into scratch); o0 places a block of W's rows.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint T = 0;
layout(binding = 0) readonly buffer BW { uint W[]; };
layout(binding = 1) readonly buffer BX { float X[]; };
layout(binding = 2) buffer BY { float Y[]; };
layout(push_constant) uniform P { uint n, rows, cols, ldw, o0, ldy, accumulate; } p;

const uint BM = 64, BN = 64, BK = 16;
shared float ws[BK][BM + 1];
shared float xs[BK][BN + 1];

void main() {
  const uint t = gl_LocalInvocationIndex;
  const uint ob = gl_WorkGroupID.x * BM, jb = gl_WorkGroupID.y * BN;
  const uint to = (t % 16) * 4, tj = (t / 16) * 4;
  float acc[4][4];
  for (uint a = 0; a < 4; ++a)
    for (uint b = 0; b < 4; ++b) acc[a][b] = 0.0;
  for (uint k0 = 0; k0 < p.cols; k0 += BK) {
    // 64 x 16 elements of W and of X, 4 per invocation; out of range reads as 0.
    for (uint e = t; e < BM * BK; e += 256) {
      const uint kk = e % BK, rr = e / BK;
      const uint o = ob + rr, j = jb + rr, k = k0 + kk;
      ws[kk][rr] = (o < p.rows && k < p.cols) ? DENSE_AT(W, T, o * p.ldw + k) : 0.0;
      xs[kk][rr] = (j < p.n && k < p.cols) ? X[j * p.cols + k] : 0.0;
    }
    barrier();
    for (uint kk = 0; kk < BK; ++kk) {
      float wv[4], xv[4];
      for (uint a = 0; a < 4; ++a) wv[a] = ws[kk][to + a];
      for (uint b = 0; b < 4; ++b) xv[b] = xs[kk][tj + b];
      for (uint a = 0; a < 4; ++a)
        for (uint b = 0; b < 4; ++b) acc[a][b] += wv[a] * xv[b];
    }
    barrier();
  }
  for (uint a = 0; a < 4; ++a)
    for (uint b = 0; b < 4; ++b) {
      const uint o = ob + to + a, j = jb + tj + b;
      if (o < p.rows && j < p.n) {
        const uint yi = j * p.ldy + p.o0 + o;
        Y[yi] = (p.accumulate != 0 ? Y[yi] : 0.0) + acc[a][b];
      }
    }
}
