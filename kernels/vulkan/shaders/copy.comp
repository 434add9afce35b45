#version 450
// Device-to-device copy of 16-byte words through the shader cores, for the benchmarks' bandwidth
// baseline: vkCmdCopyBuffer may run on a copy engine far slower than the SMs (837 GB/s against
// ~4.2 TB/s on an H200), which would flatter every kernel compared with it. Grid-stride loop,
// one uvec4 load and store per iteration.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(binding = 0) readonly buffer BS { uvec4 S[]; };
layout(binding = 1) writeonly buffer BD { uvec4 D[]; };
layout(push_constant) uniform P { uint n; } p;  // uvec4 words

void main() {
  const uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * 256u;
  for (uint i = flat_index(); i < p.n; i += stride) D[i] = S[i];
}
