#version 450
// Prefill: Y[j, o0 + o] (=|+=) sum_i X[j, i] W[o, i] for n > 8 rows: a shared-memory GEMM. A
// workgroup of 256 computes 64 outputs x 64 rows of x, 16 columns of i per step; invocation
// (to, tj) = (t % 16, t / 16) owns outputs 4 to .. 4 to + 3 and rows 4 tj .. 4 tj + 3. W has
// type T and row stride ldw elements (T = f32 when it is a block of tiled rows dequantized into
// scratch); o0 places a block of W's rows.
//
// Per step an invocation reads one vec4 of W and one of x from shared memory for 16 FMAs (the
// first version read 8 scalars), and within a subgroup of 32 the two `tj` read one x vec4 each,
// so the reads stay few wavefronts. The next step's global loads are issued into registers
// before this step's FMAs (one shared buffer, two barriers per step). On an H200 (run 55) 7B
// prefill 1078-1086 tok/s against 842 for the first version; 8 outputs per invocation (128 x 64
// blocks) gave 1014-1028: too few workgroups per multiprocessor. Accumulation order per output:
// i ascending.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint T = 0;
layout(binding = 0) readonly buffer BW { uint W[]; };
layout(binding = 1) readonly buffer BX { float X[]; };
layout(binding = 2) buffer BY { float Y[]; };
layout(push_constant) uniform P { uint n, rows, cols, ldw, o0, ldy, accumulate; } p;

const uint BM = 64, BN = 64, BK = 16;
const uint W_PER = BM * BK / 256, X_PER = BN * BK / 256;  // global loads per invocation and step
// k-major, padded by one vec4 per k so that the transposing stores (16 k per 16 lanes) fall
// in different banks.
shared vec4 ws[BK][BM / 4 + 1];
shared vec4 xs[BK][BN / 4 + 1];

// Element e (< BM * BK) of the W block at k0: row e / BK, column k0 + e % BK; 0 outside W.
float w_at(uint ob, uint k0, uint e) {
  const uint o = ob + e / BK, k = k0 + e % BK;
  return (o < p.rows && k < p.cols) ? DENSE_AT(W, T, o * p.ldw + k) : 0.0;
}
float x_at(uint jb, uint k0, uint e) {
  const uint j = jb + e / BK, k = k0 + e % BK;
  return (j < p.n && k < p.cols) ? X[j * p.cols + k] : 0.0;
}

void main() {
  const uint t = gl_LocalInvocationIndex;
  const uint ob = gl_WorkGroupID.x * BM, jb = gl_WorkGroupID.y * BN;
  const uint to = t % 16u, tj = t / 16u;
  vec4 acc[4];  // acc[a][b]: output 4 to + a, row 4 tj + b
  [[unroll]] for (uint a = 0; a < 4u; ++a) acc[a] = vec4(0.0);
  float wr[W_PER], xr[X_PER];
  [[unroll]] for (uint i = 0; i < W_PER; ++i) wr[i] = w_at(ob, 0u, t + 256u * i);
  [[unroll]] for (uint i = 0; i < X_PER; ++i) xr[i] = x_at(jb, 0u, t + 256u * i);
  for (uint k0 = 0; k0 < p.cols; k0 += BK) {
    barrier();  // the previous step's reads of ws / xs are done
    [[unroll]] for (uint i = 0; i < W_PER; ++i) {
      const uint e = t + 256u * i;
      ws[e % BK][(e / BK) / 4u][(e / BK) % 4u] = wr[i];
    }
    [[unroll]] for (uint i = 0; i < X_PER; ++i) {
      const uint e = t + 256u * i;
      xs[e % BK][(e / BK) / 4u][(e / BK) % 4u] = xr[i];
    }
    barrier();
    if (k0 + BK < p.cols) {
      [[unroll]] for (uint i = 0; i < W_PER; ++i) wr[i] = w_at(ob, k0 + BK, t + 256u * i);
      [[unroll]] for (uint i = 0; i < X_PER; ++i) xr[i] = x_at(jb, k0 + BK, t + 256u * i);
    }
    [[unroll]] for (uint kk = 0; kk < BK; ++kk) {
      const vec4 xv = xs[kk][tj], wv = ws[kk][to];
      [[unroll]] for (uint a = 0; a < 4u; ++a) acc[a] = fma(vec4(wv[a]), xv, acc[a]);
    }
  }
  [[unroll]] for (uint a = 0; a < 4u; ++a) {
    const uint o = ob + 4u * to + a;
    if (o >= p.rows) continue;
    [[unroll]] for (uint b = 0; b < 4u; ++b) {
      const uint j = jb + 4u * tj + b;
      if (j < p.n) {
        const uint yi = j * p.ldy + p.o0 + o;
        Y[yi] = (p.accumulate != 0 ? Y[yi] : 0.0) + acc[a][b];
      }
    }
  }
}
