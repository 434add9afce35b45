#version 450
// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w; one workgroup per row. out may alias
// x: every element is read (for the sum) before the barrier inside wg_sum, written after.
#extension GL_GOOGLE_include_directive : require
#define WG 256
#include "common.glsl"
layout(local_size_x = WG) in;
layout(constant_id = 0) const uint WTYPE = 0;
layout(binding = 0) buffer BX { float X[]; };
layout(binding = 1) readonly buffer BW { uint W[]; };
layout(binding = 2) buffer BO { float O[]; };
layout(push_constant) uniform P { uint width; float eps; } p;

void main() {
  const uint r = gl_WorkGroupID.x, t = gl_LocalInvocationIndex, base = r * p.width;
  float s = 0.0;
  for (uint i = t; i < p.width; i += WG) s += X[base + i] * X[base + i];
  const float ms = wg_sum(s) / float(p.width);
  const float inv = 1.0 / sqrt(ms + p.eps);
  for (uint i = t; i < p.width; i += WG) O[base + i] = X[base + i] * inv * DENSE_AT(W, WTYPE, i);
}
