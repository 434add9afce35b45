#version 450
// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w; one workgroup per row. out may alias
// x: every element is read (for the sum) before the barrier inside wg_sum, written after.
//
// A row of a 7B model is 4096 values for one workgroup: a loop of dependent-looking
// iterations would take an L2 round trip each (11 us per row on an H200, run 35). So each
// invocation takes 4 vec4s per 4096 values, their loads issued together (the loops have
// constant trip counts and unroll), and reads w's 16 values before the reduction.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#define WG 256
#include "common.glsl"
layout(local_size_x = WG) in;
layout(constant_id = 0) const uint WTYPE = 0;
layout(binding = 0) buffer BX { float X[]; };
layout(binding = 0) buffer BX4 { vec4 X4[]; };
layout(binding = 1) readonly buffer BW { uint W[]; };
layout(binding = 2) buffer BO { float O[]; };
layout(binding = 2) buffer BO4 { vec4 O4[]; };
layout(push_constant) uniform P { uint width; float eps; } p;

const uint V = 4u;  // vec4s per invocation per block of WG * V * 4 values

vec4 weight4(uint i) {
  return vec4(DENSE_AT(W, WTYPE, i), DENSE_AT(W, WTYPE, i + 1u), DENSE_AT(W, WTYPE, i + 2u),
              DENSE_AT(W, WTYPE, i + 3u));
}

// width % 4 == 0 (every model's): vec4 loads, V of them in flight per invocation.
void rmsnorm_vec4(uint r, uint t) {
  const uint n4 = p.width / 4u, base4 = r * n4;
  float s = 0.0;
  for (uint b = 0; b < n4; b += WG * V) {
    vec4 xv[V];
    [[unroll]] for (uint k = 0; k < V; ++k) {
      const uint i = b + k * WG + t;
      xv[k] = i < n4 ? X4[base4 + i] : vec4(0.0);
    }
    [[unroll]] for (uint k = 0; k < V; ++k) s += dot(xv[k], xv[k]);
  }
  vec4 wv[V];  // the first block's weights, read while the sum is reduced
  [[unroll]] for (uint k = 0; k < V; ++k) {
    const uint i = k * WG + t;
    wv[k] = i < n4 ? weight4(4u * i) : vec4(0.0);
  }
  const float inv = 1.0 / sqrt(wg_sum(s) / float(p.width) + p.eps);
  for (uint b = 0; b < n4; b += WG * V) {
    vec4 xv[V];
    [[unroll]] for (uint k = 0; k < V; ++k) {
      const uint i = b + k * WG + t;
      xv[k] = i < n4 ? X4[base4 + i] : vec4(0.0);
      if (b > 0u && i < n4) wv[k] = weight4(4u * i);
    }
    [[unroll]] for (uint k = 0; k < V; ++k) {
      const uint i = b + k * WG + t;
      if (i < n4) O4[base4 + i] = xv[k] * inv * wv[k];
    }
  }
}

void main() {
  const uint r = gl_WorkGroupID.x, t = gl_LocalInvocationIndex, base = r * p.width;
  if (p.width % 4u == 0u) {
    rmsnorm_vec4(r, t);
    return;
  }
  float s = 0.0;
  for (uint i = t; i < p.width; i += WG) s += X[base + i] * X[base + i];
  const float ms = wg_sum(s) / float(p.width);
  const float inv = 1.0 / sqrt(ms + p.eps);
  for (uint i = t; i < p.width; i += WG) O[base + i] = X[base + i] * inv * DENSE_AT(W, WTYPE, i);
}
