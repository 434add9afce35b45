#version 450
// Prefill attention: n > 8 query rows of one slot, head_dim 64 or 128 (vk_ops.cpp decides; other
// batches take attention.comp). A workgroup takes 32 query rows of one head and walks the cached
// positions up to the last of its rows' positions in blocks of 8, the block's queries, keys and
// values staged in shared memory as f32: each key and value read from the cache serves 32 query
// rows, where attention.comp (a workgroup per row) reads them again for every row (289 us per
// layer of a 512-row chunk of the 7B on an H200, 16% of its prefill: NOTES.md round 6). The
// CUDA backend's attention_prefill.cu (64 rows, keys in blocks of 32) cut to 27 KB of shared
// memory: llvmpipe allows 32 KB, and the tests run this shader there.
//
// Invocation t = 8 r + j holds query row r; of each key block, key j's score; of the output,
// dimensions j + 8 k (k < head_dim / 8). Scores go through shared memory, where a row's 8
// invocations read the row's block max (the same reads, so the same value in all 8) and then
// the block's probabilities.
// Numerics: s = scale * dot(q, k) in f32 over d in groups of 4, an online softmax in f32 per block
// of 8 keys, values accumulated in f32: only the order of the sums differs from the CPU's.
// Position p is visible to a row at position pos when p <= pos (the host has checked that every
// such position is stored). out may alias q: a workgroup reads only the q it writes, before.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint KVT = 0;  // 0: f16 cache, 1: f32
layout(binding = 0) readonly buffer BQ { float Q[]; };
layout(binding = 1) readonly buffer BKC { uint KC[]; };
layout(binding = 2) readonly buffer BVC { uint VC[]; };
layout(binding = 3) readonly buffer BR { ivec2 ROWS[]; };  // (slot, pos); all rows one slot
layout(binding = 4) writeonly buffer BO { float O[]; };
layout(push_constant) uniform P {
  uint n_heads, n_kv_heads, head_dim, layer, n_slots, n_ctx, n;
  float scale;
} p;

const uint QR = 32u, KB = 8u, MAXD = 128u;
const uint LDQ = MAXD + 4u, LDP = KB + 1u;  // +4: 16-byte aligned rows staggered across banks
shared float q_s[QR * LDQ];
shared float k_s[KB * LDQ];
shared float v_s[KB * MAXD];
shared float p_s[QR * LDP];  // scores
shared float e_s[QR * LDP];  // probabilities
const float NEG_INF = -1.0 / 0.0;

// Keys and values p0 .. p0 + KB - 1 (zeros past `last`): loaded into registers a block ahead
// (load_kv), so that the block's loads are in flight while the previous block computes, then
// stored to shared memory (stage_kv). KB * head_dim / 256 <= 4 elements of each per invocation.
struct KvBlock {
  vec4 k, v;
};

KvBlock load_kv(uint t, uint base, uint p0, uint last) {
  const uint hd = p.head_dim;
  KvBlock b;
  [[unroll]] for (uint i = 0; i < 4u; ++i) {
    const uint e = t + 256u * i, j = e / hd, at = base + (p0 + j) * hd + e % hd;
    const bool in_ = e < KB * hd && p0 + j <= last;
    b.k[i] = in_ ? KV_LOAD(KC, at) : 0.0;
    b.v[i] = in_ ? KV_LOAD(VC, at) : 0.0;
  }
  return b;
}

void stage_kv(uint t, KvBlock b) {
  const uint hd = p.head_dim;
  [[unroll]] for (uint i = 0; i < 4u; ++i) {
    const uint e = t + 256u * i, j = e / hd, d = e % hd;
    if (e < KB * hd) {
      k_s[j * LDQ + d] = b.k[i];
      v_s[j * MAXD + d] = b.v[i];
    }
  }
}

// scale * dot(q row r, key j) over d in groups of 4.
float score(uint r, uint j) {
  float s = 0.0;
  for (uint d = 0; d < p.head_dim; d += 4u)
    s += dot(vec4(q_s[r * LDQ + d], q_s[r * LDQ + d + 1u], q_s[r * LDQ + d + 2u], q_s[r * LDQ + d + 3u]),
             vec4(k_s[j * LDQ + d], k_s[j * LDQ + d + 1u], k_s[j * LDQ + d + 2u], k_s[j * LDQ + d + 3u]));
  return p.scale * s;
}

// Row r's online-softmax step over the block (scores in p_s): the new running max m, invocation
// j's probability to e_s, and the factor that rescales the row's sum and accumulators.
float softmax_step(uint r, uint j, inout float m) {
  float bm = NEG_INF;
  for (uint i = 0; i < KB; ++i) bm = max(bm, p_s[r * LDP + i]);
  const float mn = max(m, bm);
  const bool none = mn == NEG_INF;  // no visible position yet (a padding row)
  e_s[r * LDP + j] = none ? 0.0 : exp(p_s[r * LDP + j] - mn);
  const float c = none ? 1.0 : exp(m - mn);  // 0 on the row's first visible block
  m = mn;
  return c;
}

void main() {
  const uint h = gl_WorkGroupID.x, r0 = gl_WorkGroupID.y * QR, t = gl_LocalInvocationIndex;
  const uint r = t / KB, j = t % KB, hd = p.head_dim;
  const uint rows = min(QR, p.n - r0);
  int last = -1;
  for (uint i = 0; i < rows; ++i) last = max(last, ROWS[r0 + i].y);
  const int pos = r < rows ? ROWS[r0 + r].y : -1;
  const uint slot = uint(ROWS[r0].x);
  const uint base = (((p.layer * p.n_slots + slot) * p.n_kv_heads + h / (p.n_heads / p.n_kv_heads)) * p.n_ctx) * hd;
  for (uint e = t; e < QR * hd; e += 256u) {
    const uint qr = e / hd, d = e % hd;
    q_s[qr * LDQ + d] = qr < rows ? Q[((r0 + qr) * p.n_heads + h) * hd + d] : 0.0;
  }
  // Dimensions j + 8 k: acc_q holds k = 4 q .. 4 q + 3 (q < 2 for head_dim 64). Four named
  // vectors, not an array: glslc left a vec4[4] in function memory.
  float m = NEG_INF, l = 0.0;
  vec4 acc0 = vec4(0.0), acc1 = vec4(0.0), acc2 = vec4(0.0), acc3 = vec4(0.0);
  KvBlock next = load_kv(t, base, 0u, uint(last));
  for (uint p0 = 0; int(p0) <= last; p0 += KB) {
    barrier();  // the previous block's reads of k_s, v_s and e_s are done (and q_s is staged)
    stage_kv(t, next);
    barrier();
    if (int(p0 + KB) <= last) next = load_kv(t, base, p0 + KB, uint(last));
    p_s[r * LDP + j] = int(p0 + j) <= pos ? score(r, j) : NEG_INF;
    barrier();
    const float c = softmax_step(r, j, m);
    barrier();
    float sum = 0.0;
    acc0 *= c, acc1 *= c, acc2 *= c, acc3 *= c;
    for (uint i = 0; i < KB; ++i) {
      const float e = e_s[r * LDP + i];
      const uint v = i * MAXD + j;
      sum += e;
#define ACC(q) e * vec4(v_s[v + 32u * q], v_s[v + 32u * q + 8u], v_s[v + 32u * q + 16u], v_s[v + 32u * q + 24u])
      acc0 += ACC(0u);
      acc1 += ACC(1u);
      if (hd > 64u) {
        acc2 += ACC(2u);
        acc3 += ACC(3u);
      }
#undef ACC
    }
    l = l * c + sum;
  }
  if (r >= rows) return;
  const float inv = 1.0 / l;
  const uint o = ((r0 + r) * p.n_heads + h) * hd + j;
  [[unroll]] for (uint k = 0; k < 4u; ++k) {
    O[o + 8u * k] = acc0[k] * inv;
    O[o + 32u + 8u * k] = acc1[k] * inv;
    if (hd > 64u) {
      O[o + 64u + 8u * k] = acc2[k] * inv;
      O[o + 96u + 8u * k] = acc3[k] * inv;
    }
  }
}
