#version 450
// Causal attention over the KV cache, one workgroup per (head, row), with the CPU's blocked
// online softmax: positions in blocks of WG, the block's scores (one per invocation), the
// running max raised once per block (rescaling the sum and the accumulators), exp(s - m) <= 1
// weighting the values. Invocation t accumulates dimensions t and t + WG (head_dim <= 2 WG).
// out may alias q: q is copied to shared memory before anything is written.
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"
layout(local_size_x = WG) in;
layout(constant_id = 0) const uint KVT = 0;
layout(binding = 0) readonly buffer BQ { float Q[]; };
layout(binding = 1) readonly buffer BKC { uint KC[]; };
layout(binding = 2) readonly buffer BVC { uint VC[]; };
layout(binding = 3) readonly buffer BR { ivec2 ROWS[]; };
layout(binding = 4) writeonly buffer BO { float O[]; };
layout(push_constant) uniform P { uint n_heads, n_kv_heads, head_dim, layer, n_slots, n_ctx; float scale; } p;

shared float q_s[2 * WG];
shared float p_s[WG];

#define KV_LOAD(arr, i) (KVT == 0 ? f16_at(arr[(i) >> 1], (i)) : uintBitsToFloat(arr[(i)]))

void main() {
  const uint h = gl_WorkGroupID.x, r = gl_WorkGroupID.y, t = gl_LocalInvocationIndex;
  const uint hd = p.head_dim, group = p.n_heads / p.n_kv_heads;
  const ivec2 sp = ROWS[r];
  const uint n_pos = uint(sp.y) + 1;
  const uint base = (((p.layer * p.n_slots + uint(sp.x)) * p.n_kv_heads + h / group) * p.n_ctx) * hd;
  const uint qo = (r * p.n_heads + h) * hd;
  for (uint d = t; d < hd; d += WG) q_s[d] = Q[qo + d];
  barrier();
  float m = -1.0 / 0.0, l = 0.0, acc0 = 0.0, acc1 = 0.0;
  for (uint p0 = 0; p0 < n_pos; p0 += WG) {
    const uint nb = min(WG, n_pos - p0);
    float s = -1.0 / 0.0;
    if (t < nb) {
      const uint ko = base + (p0 + t) * hd;
      float dot_ = 0.0;
      for (uint d = 0; d < hd; ++d) dot_ += q_s[d] * KV_LOAD(KC, ko + d);
      s = p.scale * dot_;
    }
    const float bmax = wg_max(s);
    if (bmax > m) {
      const float c = exp(m - bmax);  // 0 on the first block
      l *= c;
      acc0 *= c;
      acc1 *= c;
      m = bmax;
    }
    const float e = t < nb ? exp(s - m) : 0.0;
    p_s[t] = e;
    l += wg_sum(e);  // its barriers also publish p_s
    for (uint j = 0; j < nb; ++j) {
      const uint vo = base + (p0 + j) * hd;
      if (t < hd) acc0 += p_s[j] * KV_LOAD(VC, vo + t);
      if (t + WG < hd) acc1 += p_s[j] * KV_LOAD(VC, vo + t + WG);
    }
    barrier();  // p_s is rewritten by the next block
  }
  const float inv = 1.0 / l;
  if (t < hd) O[qo + t] = acc0 * inv;
  if (t + WG < hd) O[qo + t + WG] = acc1 * inv;
}
