#version 450
// y[j, o] (=|+=) sum_i x[j, i] W[o, i] for a dense weight of type T and NB <= 8 rows of x:
// a workgroup of 256 takes 8 output rows, 32 invocations per row striding its columns
// (consecutive invocations read consecutive elements), each weight element read once for all
// NB rows. One barrier, then invocation 0 of each row adds the 32 partial sums in order (a
// fixed order: results are deterministic). Few, fat workgroups also suit CPU drivers
// (llvmpipe), where every workgroup and barrier has a high fixed cost.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint T = 0;
layout(constant_id = 1) const uint NB = 1;
layout(binding = 0) readonly buffer BW { uint W[]; };
layout(binding = 1) readonly buffer BX { float X[]; };
layout(binding = 2) buffer BY { float Y[]; };
layout(push_constant) uniform P { uint rows, cols, accumulate; } p;

shared float part_[256 * NB];

void main() {
  const uint t = gl_LocalInvocationIndex, lane = t % 32u;
  const uint o = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * 8u + t / 32u;
  float acc[NB];
  for (uint j = 0; j < NB; ++j) acc[j] = 0.0;
  if (o < p.rows) {
    const uint wo = o * p.cols;
    for (uint i = lane; i < p.cols; i += 32u) {
      const float w = DENSE_AT(W, T, wo + i);
      for (uint j = 0; j < NB; ++j) acc[j] += w * X[j * p.cols + i];
    }
  }
  for (uint j = 0; j < NB; ++j) part_[t * NB + j] = acc[j];
  barrier();
  if (o >= p.rows || lane != 0u) return;
  for (uint j = 0; j < NB; ++j) {
    float s = 0.0;
    for (uint l = 0; l < 32u; ++l) s += part_[(t + l) * NB + j];
    Y[j * p.rows + o] = (p.accumulate != 0 ? Y[j * p.rows + o] : 0.0) + s;
  }
}
