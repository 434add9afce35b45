#version 450
// The k largest values of each row (one workgroup per row), in descending order, ties to the
// lower index: k rounds of a workgroup arg-max over the elements ranked after the previous
// pick in the order (value desc, index asc). k <= 64, so k full passes over a row in cache is
// cheaper than any sort. Writes OUT[(r * k + j) * 2] = index, + 1 = value bits.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#define TWG 256
layout(local_size_x = TWG) in;
layout(binding = 0) readonly buffer BL { float L[]; };
layout(binding = 1) writeonly buffer BO { uint OUT[]; };
layout(push_constant) uniform P { uint width, k; } p;

shared float sv[TWG];
shared uint si[TWG];

// a ranks before b
bool before(float va, uint ia, float vb, uint ib) { return va > vb || (va == vb && ia < ib); }

void main() {
  const uint r = gl_WorkGroupID.x, t = gl_LocalInvocationIndex, base = r * p.width;
  float pv = 1.0 / 0.0;
  uint pi = 0xffffffffu;  // the previous pick; nothing ranks before (+inf, none) but +inf itself
  bool first = true;
  for (uint j = 0; j < p.k; ++j) {
    float bv = 0.0;
    uint bi = 0xffffffffu;
    for (uint i = t; i < p.width; i += TWG) {
      const float v = L[base + i];
      if (!first && !before(pv, pi, v, i)) continue;  // already picked
      if (bi == 0xffffffffu || before(v, i, bv, bi)) {
        bv = v;
        bi = i;
      }
    }
    sv[t] = bv;
    si[t] = bi;
    barrier();
    for (uint s = TWG / 2; s > 0; s >>= 1) {
      if (t < s && si[t + s] != 0xffffffffu && (si[t] == 0xffffffffu || before(sv[t + s], si[t + s], sv[t], si[t]))) {
        sv[t] = sv[t + s];
        si[t] = si[t + s];
      }
      barrier();
    }
    pv = sv[0];
    pi = si[0];
    first = false;
    barrier();
    if (t == 0) {
      OUT[(r * p.k + j) * 2] = pi;
      OUT[(r * p.k + j) * 2 + 1] = floatBitsToUint(pv);
    }
  }
}
