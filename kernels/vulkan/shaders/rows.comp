#version 450
// out[r, c] = src[ids[r], c] as f32 for a dense source of type T (embed of f32/f16/bf16
// tables; get_rows with T = f32). One invocation per output element.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint T = 0;
layout(binding = 0) readonly buffer BS { uint S[]; };
layout(binding = 1) readonly buffer BI { int IDS[]; };
layout(binding = 2) writeonly buffer BO { float O[]; };
layout(push_constant) uniform P { uint n, width; } p;

void main() {
  const uint id = flat_index();
  if (id >= p.n * p.width) return;
  const uint r = id / p.width, c = id % p.width;
  O[id] = DENSE_AT(S, T, uint(IDS[r]) * p.width + c);
}
