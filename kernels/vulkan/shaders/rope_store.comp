#version 450
// Backend::rope_and_store in one dispatch: rope on q's and k's heads in place, then k's and v's
// heads into the cache at (layer, slot, pos), as rope.comp twice and kv_store.comp would (the
// same expressions; f16 caches rounded to nearest even, bit-exact with the CPU). One workgroup
// per (head, row): heads 0 .. n_heads - 1 of q, then n_kv_heads of k, then of v. A head goes
// through shared memory, so that its pairs can be rotated in place (neox pairs (i, i + hd/2)
// are far apart) and every invocation then writes two adjacent elements: one cache word of an
// f16 cache. Why one dispatch: in a decode step the three ops were three launches behind
// barriers for ~0.1 us of work each.
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"
layout(local_size_x = WG) in;
layout(constant_id = 0) const uint KVT = 0;  // 0: f16 cache, 1: f32
layout(binding = 0) buffer BQ { float Q[]; };
layout(binding = 1) buffer BK { float K[]; };
layout(binding = 2) readonly buffer BV { float V[]; };
layout(binding = 3) buffer BKC { uint KC[]; };
layout(binding = 4) buffer BVC { uint VC[]; };
layout(binding = 5) readonly buffer BR { ivec2 ROWS[]; };  // (slot, pos)
layout(binding = 6) readonly buffer BCS { float CS[]; };   // per row: cos, sin of each pair
layout(push_constant) uniform P { uint n_heads, n_kv_heads, head_dim, layer, n_slots, n_ctx, interleaved; } p;

shared float x_s[2 * WG];  // one head (head_dim <= 256)

// Element e of the head after rotation: rope.comp's X[ia] = a c - b s, X[ib] = a s + b c.
float rotated(uint e, uint r) {
  const uint half_ = p.head_dim / 2u;
  const uint i = p.interleaved != 0u ? e / 2u : e % half_;
  const uint ia = p.interleaved != 0u ? 2u * i : i, ib = ia + (p.interleaved != 0u ? 1u : half_);
  const float c = CS[(r * half_ + i) * 2u], s = CS[(r * half_ + i) * 2u + 1u];
  const float a0 = x_s[ia], b0 = x_s[ib];
  return e == ia ? a0 * c - b0 * s : a0 * s + b0 * c;
}

void store_pair(bool to_k, uint dst, float a, float b) {
  if (KVT == 0u) {
    if (to_k)
      KC[dst / 2u] = pack_f16x2_rne(a, b);
    else
      VC[dst / 2u] = pack_f16x2_rne(a, b);
  } else if (to_k) {
    KC[dst] = floatBitsToUint(a);
    KC[dst + 1u] = floatBitsToUint(b);
  } else {
    VC[dst] = floatBitsToUint(a);
    VC[dst + 1u] = floatBitsToUint(b);
  }
}

void main() {
  const uint h = gl_WorkGroupID.x, r = gl_WorkGroupID.y, t = gl_LocalInvocationIndex, hd = p.head_dim;
  const bool is_q = h < p.n_heads, is_v = h >= p.n_heads + p.n_kv_heads;
  const uint kh = is_q ? 0u : (h - p.n_heads) % p.n_kv_heads;
  const uint src = is_q ? (r * p.n_heads + h) * hd : (r * p.n_kv_heads + kh) * hd;
  const ivec2 sp = ROWS[r];
  const uint dst = (((p.layer * p.n_slots + uint(sp.x)) * p.n_kv_heads + kh) * p.n_ctx + uint(sp.y)) * hd;
  if (is_v) {  // the whole workgroup: no barrier below is skipped by part of it
    for (uint e = 2u * t; e < hd; e += 2u * WG) store_pair(false, dst + e, V[src + e], V[src + e + 1u]);
    return;
  }
  for (uint e = t; e < hd; e += WG) x_s[e] = is_q ? Q[src + e] : K[src + e];
  barrier();
  for (uint e = 2u * t; e < hd; e += 2u * WG) {
    const float a = rotated(e, r), b = rotated(e + 1u, r);
    if (is_q) {
      Q[src + e] = a;
      Q[src + e + 1u] = b;
    } else {
      K[src + e] = a;
      K[src + e + 1u] = b;
      store_pair(true, dst + e, a, b);
    }
  }
}
