#version 450
// Element-wise ops, one invocation per element; OP (specialization constant 0) picks:
//   0 add:      A[i] += B[i]
//   1 swiglu:   C[i] = silu(A[i]) * B[i]          (C may alias A)
//   2 pad rows: C[r * ld + c] = c < cols ? A[r * cols + c] : 0   (count = n * ld)
//   3 split-K:  C[i] = (accumulate ? C[i] : 0) + sum_s A[s * count + i], s in order
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint OP = 0;
layout(binding = 0) buffer BA { float A[]; };
layout(binding = 1) buffer BB { float B[]; };
layout(binding = 2) buffer BC { float C[]; };
layout(push_constant) uniform P { uint count, cols, ld, splits, accumulate; } p;

// As the CPU's silu: sigmoid from e = exp(-|g|) <= 1 so nothing overflows.
float silu(float g) {
  const float e = exp(-abs(g));
  const float sig = g >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
  return sig == 0.0 ? -0.0 : g * sig;
}

void main() {
  const uint i = flat_index();
  if (i >= p.count) return;
  if (OP == 0) {
    A[i] += B[i];
  } else if (OP == 1) {
    C[i] = silu(A[i]) * B[i];
  } else if (OP == 2) {
    const uint r = i / p.ld, c = i % p.ld;
    C[i] = c < p.cols ? A[r * p.cols + c] : 0.0;
  } else {
    float s = p.accumulate != 0 ? C[i] : 0.0;
    for (uint k = 0; k < p.splits; ++k) s += A[k * p.count + i];
    C[i] = s;
  }
}
