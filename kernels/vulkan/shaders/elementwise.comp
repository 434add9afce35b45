#version 450
// Element-wise ops, one invocation per element; OP (specialization constant 0) picks:
//   0 add:      A[i] += B[i]
//   1 swiglu:   C[i] = silu(A[i]) * B[i]          (C may alias A)
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint OP = 0;
layout(binding = 0) buffer BA { float A[]; };
layout(binding = 1) buffer BB { float B[]; };
layout(binding = 2) buffer BC { float C[]; };
layout(push_constant) uniform P { uint count; } p;

void main() {
  const uint i = flat_index();
  if (i >= p.count) return;
  if (OP == 0) {
    A[i] += B[i];
  } else {
    C[i] = silu(A[i]) * B[i];
  }
}
