#version 450
// y[j, o] (=|+=) sum_i x[j, i] W[o, i] for a dense weight of type T and NB <= 8 rows of x:
// one workgroup per output row o, invocations striding the columns (consecutive invocations
// read consecutive elements), then one workgroup reduction per row of x. Each weight element
// is read once for all NB rows.
#extension GL_GOOGLE_include_directive : require
#define WG 256
#include "common.glsl"
layout(local_size_x = WG) in;
layout(constant_id = 0) const uint T = 0;
layout(constant_id = 1) const uint NB = 1;
layout(binding = 0) readonly buffer BW { uint W[]; };
layout(binding = 1) readonly buffer BX { float X[]; };
layout(binding = 2) buffer BY { float Y[]; };
layout(push_constant) uniform P { uint rows, cols, accumulate; } p;

void main() {
  const uint o = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  if (o >= p.rows) return;  // uniform over the workgroup
  const uint t = gl_LocalInvocationIndex, wo = o * p.cols;
  float acc[NB];
  for (uint j = 0; j < NB; ++j) acc[j] = 0.0;
  for (uint i = t; i < p.cols; i += WG) {
    const float w = DENSE_AT(W, T, wo + i);
    for (uint j = 0; j < NB; ++j) acc[j] += w * X[j * p.cols + i];
  }
  for (uint j = 0; j < NB; ++j) {
    const float s = wg_sum(acc[j]);
    if (t == 0) Y[j * p.rows + o] = (p.accumulate != 0 ? Y[j * p.rows + o] : 0.0) + s;
  }
}
