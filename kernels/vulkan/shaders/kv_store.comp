#version 450
// Stores k and v rows ([n, n_kv_heads * head_dim]) into the cache at (layer, slot, pos). One
// invocation per pair of elements: head_dim is even, so a pair is one 32-bit word of an f16
// cache. KVT: 0 f16 (rounded to nearest even, bit-exact with the CPU), 1 f32.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint KVT = 0;
layout(binding = 0) readonly buffer BK { float K[]; };
layout(binding = 1) readonly buffer BV { float V[]; };
layout(binding = 2) buffer BKC { uint KC[]; };
layout(binding = 3) buffer BVC { uint VC[]; };
layout(binding = 4) readonly buffer BR { ivec2 ROWS[]; };  // (slot, pos)
layout(push_constant) uniform P { uint n, n_kv_heads, head_dim, layer, n_slots, n_ctx; } p;

void main() {
  const uint pairs = p.head_dim / 2, width = p.n_kv_heads * p.head_dim;
  const uint id = flat_index();
  if (id >= p.n * p.n_kv_heads * pairs) return;
  const uint d = (id % pairs) * 2, h = (id / pairs) % p.n_kv_heads, r = id / (pairs * p.n_kv_heads);
  const ivec2 sp = ROWS[r];
  const uint dst = (((p.layer * p.n_slots + uint(sp.x)) * p.n_kv_heads + h) * p.n_ctx + uint(sp.y)) * p.head_dim + d;
  const uint src = r * width + h * p.head_dim + d;
  if (KVT == 0) {
    KC[dst / 2] = pack_f16x2_rne(K[src], K[src + 1]);
    VC[dst / 2] = pack_f16x2_rne(V[src], V[src + 1]);
  } else {
    KC[dst] = floatBitsToUint(K[src]);
    KC[dst + 1] = floatBitsToUint(K[src + 1]);
    VC[dst] = floatBitsToUint(V[src]);
    VC[dst + 1] = floatBitsToUint(V[src + 1]);
  }
}
