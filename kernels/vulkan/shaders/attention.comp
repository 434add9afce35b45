#version 450
// Causal attention over the KV cache, one workgroup per (head, row, split), with the CPU's
// blocked online softmax: positions in blocks of WG, the block's scores (one per invocation),
// the running max raised once per block (rescaling the sum and the accumulators), exp(s - m) <= 1
// weighting the values. With splits > 1 (decode) the row's positions go to as many of them as
// fill min_chunk positions each, each a contiguous share, and the last to finish merges them
// (finish_split): more workgroups for a step's few rows, each with a shorter chain of loads.
// Invocation t accumulates dimensions t and t + WG (head_dim <= 2 WG).
// out may alias q: q is copied to shared memory before anything is written.
// With digits_tiles != 0 (decode, one row, head_dim == WG: head h's output is tile column h of wo's
// x) the workgroup that writes a head's output also writes that tile column's digits for
// matvec_dot.comp (xq.glsl), so that wo needs no conversion dispatch.
// Loads: a position's key is read 64 values per iteration when head_dim % 16 == 0 (uvec4s of
// halves, or of floats), and the values of 16 positions per iteration, so that several loads
// are in flight per invocation: one element per iteration made every load a round trip
// (19 us per layer for ~100 positions on an H200, run 35).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#define WG 128
#include "common.glsl"
layout(local_size_x = WG) in;
layout(constant_id = 0) const uint KVT = 0;
layout(binding = 0) readonly buffer BQ { float Q[]; };
layout(binding = 1) readonly buffer BKC { uint KC[]; };
layout(binding = 1) readonly buffer BKC4 { uvec4 KC4[]; };
layout(binding = 2) readonly buffer BVC { uint VC[]; };
layout(binding = 3) readonly buffer BR { ivec2 ROWS[]; };
layout(binding = 4) writeonly buffer BO { float O[]; };
layout(binding = 5) coherent buffer BP { float PART[]; };  // per (row, head, split): acc[hd], m, l
layout(binding = 6) coherent buffer BC { uint CNT[]; };    // per (row, head): splits finished
layout(binding = 7) writeonly buffer BDQ { uint DQ[]; };  // out's digits (digits_tiles != 0)
layout(push_constant) uniform P {
  uint n_heads, n_kv_heads, head_dim, layer, n_slots, n_ctx;
  float scale;
  uint splits, digits_tiles, min_chunk;
} p;

#define XQ_WORDS DQ
#include "xq.glsl"

shared float q_s[2 * WG];
shared float p_s[WG];
shared bool last_;

// Eight key values from element k0 (a multiple of 8) on, times q_s[d0 ..].
float dot8(uint k0, uint d0) {
  vec4 a, b;
  if (KVT == 0) {
    const uvec4 w = KC4[k0 / 8u];
    a = vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
    b = vec4(unpackHalf2x16(w.z), unpackHalf2x16(w.w));
  } else {
    a = uintBitsToFloat(KC4[k0 / 4u]);
    b = uintBitsToFloat(KC4[k0 / 4u + 1u]);
  }
  return dot(a, vec4(q_s[d0], q_s[d0 + 1u], q_s[d0 + 2u], q_s[d0 + 3u])) +
         dot(b, vec4(q_s[d0 + 4u], q_s[d0 + 5u], q_s[d0 + 6u], q_s[d0 + 7u]));
}

// acc += p_s[j + k] * value row j + k for k < K_: the K_ rows' loads first, then the sums.
#define VALUE_ROWS(K_)                                                   \
  {                                                                      \
    const uint vo = base + (p0 + j) * hd;                                \
    float v0[K_], v1[K_];                                                \
    [[unroll]] for (uint k = 0; k < K_; ++k) {                           \
      v0[k] = t < hd ? KV_LOAD(VC, vo + k * hd + t) : 0.0;               \
      v1[k] = t + WG < hd ? KV_LOAD(VC, vo + k * hd + t + WG) : 0.0;     \
    }                                                                    \
    [[unroll]] for (uint k = 0; k < K_; ++k) {                           \
      acc0 += p_s[j + k] * v0[k];                                        \
      acc1 += p_s[j + k] * v1[k];                                        \
    }                                                                    \
  }

// acc += w * the value at element `vo`.
#define VALUE_FMA(w_, vo)                                        \
  {                                                              \
    if (t < hd) acc0 += (w_) * KV_LOAD(VC, (vo) + t);            \
    if (t + WG < hd) acc1 += (w_) * KV_LOAD(VC, (vo) + t + WG);  \
  }

// Splits (decode): each of the `used` workgroups of a (head, row) writes its running max m, sum l
// and unnormalized accumulators; the last one to finish (a counter per (row, head)) merges them
// in split order, so the result does not depend on timing.
void finish_split(uint unit, uint sidx, uint used, uint qo, float m, float l, float acc0, float acc1) {
  const uint t = gl_LocalInvocationIndex, hd = p.head_dim, stride = hd + 2u;
  const uint pb = (unit * p.splits + sidx) * stride;
  if (t < hd) PART[pb + t] = acc0;
  if (t + WG < hd) PART[pb + t + WG] = acc1;
  if (t == 0u) {
    PART[pb + hd] = m;
    PART[pb + hd + 1u] = l;
  }
  memoryBarrierBuffer();  // the partials are visible device-wide before the count says so
  barrier();
  if (t == 0u) last_ = atomicAdd(CNT[unit], 1u) == used - 1u;
  barrier();
  if (!last_) return;
  memoryBarrierBuffer();
  float mx = -1.0 / 0.0;
  for (uint k = 0; k < used; ++k) mx = max(mx, PART[(unit * p.splits + k) * stride + hd]);
  float lt = 0.0, o0 = 0.0, o1 = 0.0;
  for (uint k = 0; k < used; ++k) {
    const uint b = (unit * p.splits + k) * stride;
    const float c = exp(PART[b + hd] - mx);  // 0 for an empty split (m = -inf)
    lt += PART[b + hd + 1u] * c;
    if (t < hd) o0 += PART[b + t] * c;
    if (t + WG < hd) o1 += PART[b + t + WG] * c;
  }
  const float inv = 1.0 / lt;
  if (t < hd) O[qo + t] = o0 * inv;
  if (t + WG < hd) O[qo + t + WG] = o1 * inv;
  if (t == 0u) CNT[unit] = 0u;  // ready for the next dispatch
  if (p.digits_tiles != 0u) xq_store(p.digits_tiles, 0u, qo / WG, o0 * inv);
}

void main() {
  const uint h = gl_WorkGroupID.x, r = gl_WorkGroupID.y, t = gl_LocalInvocationIndex;
  const uint hd = p.head_dim, group = p.n_heads / p.n_kv_heads;
  const ivec2 sp = ROWS[r];
  const uint n_pos = uint(sp.y) + 1;
  // The splits this row's positions fill at min_chunk each; the rest of the grid has no work.
  const uint used = min(p.splits, max(1u, (n_pos + p.min_chunk - 1u) / p.min_chunk));
  if (gl_WorkGroupID.z >= used) return;
  const uint base = (((p.layer * p.n_slots + uint(sp.x)) * p.n_kv_heads + h / group) * p.n_ctx) * hd;
  const uint qo = (r * p.n_heads + h) * hd;
  for (uint d = t; d < hd; d += WG) q_s[d] = Q[qo + d];
  barrier();
  float m = -1.0 / 0.0, l = 0.0, acc0 = 0.0, acc1 = 0.0;
  const uint chunk = (n_pos + used - 1u) / used;  // this workgroup's positions: [lo, hi)
  const uint lo = min(n_pos, gl_WorkGroupID.z * chunk), hi = min(n_pos, lo + chunk);
  for (uint p0 = lo; p0 < hi; p0 += WG) {
    const uint nb = min(WG, hi - p0);
    float s = -1.0 / 0.0;
    if (t < nb) {
      const uint ko = base + (p0 + t) * hd;
      float dot_ = 0.0;
      if (hd % 16u == 0u) {
        uint d = 0;
        for (; d + 64u <= hd; d += 64u) {  // 8 loads in flight
          float part = 0.0;
          [[unroll]] for (uint k = 0; k < 8u; ++k) part += dot8(ko + d + 8u * k, d + 8u * k);
          dot_ += part;
        }
        for (; d < hd; d += 16u) dot_ += dot8(ko + d, d) + dot8(ko + d + 8u, d + 8u);
      } else {
        for (uint d = 0; d < hd; ++d) dot_ += q_s[d] * KV_LOAD(KC, ko + d);
      }
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
    uint j = 0;
    for (; j + 16u <= nb; j += 16u) VALUE_ROWS(16u)
    for (; j + 4u <= nb; j += 4u) VALUE_ROWS(4u)
    for (; j < nb; ++j) VALUE_FMA(p_s[j], base + (p0 + j) * hd)
    barrier();  // p_s is rewritten by the next block
  }
  if (used > 1u) {
    finish_split(r * p.n_heads + h, gl_WorkGroupID.z, used, qo, m, l, acc0, acc1);
    return;
  }
  const float inv = 1.0 / l;
  if (t < hd) O[qo + t] = acc0 * inv;
  if (t + WG < hd) O[qo + t + WG] = acc1 * inv;
  if (p.digits_tiles != 0u) xq_store(p.digits_tiles, 0u, qo / WG, acc0 * inv);
}
