#version 450
// The k largest values of each row, in descending order, ties to the lower index (the host
// default's rule, kernels/backend.h); NaN ranks as -inf, and values are returned as read.
//
// Two dispatches, as CUDA's topk.cu does in one launch with a counter: phase 0 runs workgroup
// (b, r) over columns [b * per_block, (b + 1) * per_block) of row r and leaves that slice's k
// best in CAND (or the results in OUT when the row is one slice); phase 1 runs one workgroup per
// row over the row's blocks x k candidates. A workgroup selects its k best in one of two ways:
//  - rounds (k <= 4, and the fallback below): k rounds of a workgroup arg-max over the entries
//    ranked after the previous pick, each a pass over the source and a reduction tree;
//  - radix selection: the k-th best key is found a byte at a time from the top, by counting in
//    256 bins the keys that share the bytes found so far (four passes); then every entry above
//    it and every entry equal to it are gathered, and each gathered entry's rank is the number
//    of gathered entries ranking before it. When more than GATHER entries tie at the k-th key,
//    the workgroup falls back to rounds. (k rounds of a pass over a 32000-wide row took the
//    selection of k = 40 longer than reading the logits back.)
// OUT[(r * k + j) * 2] = index, + 1 = value bits; CAND likewise, per slice, with NaN as -inf.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#define TWG 256
#define GATHER 256
#define NONE 0xffffffffu
layout(local_size_x = TWG) in;
layout(binding = 0) readonly buffer BL { float L[]; };
layout(binding = 1) buffer BC { uint CAND[]; };
layout(binding = 2) writeonly buffer BO { uint OUT[]; };
layout(push_constant) uniform P { uint width, k, per_block, blocks, phase; } p;

shared uint hist[TWG];
shared uint suffix[TWG];
shared uint found_key, found_need, found_equal, n_gathered;
shared float sv[TWG];
shared uint si[TWG];

// a ranks before b
bool before(float va, uint ia, float vb, uint ib) { return va > vb || (va == vb && ia < ib); }

// An unsigned key in the order of before()'s values (NaN is already -inf; -0 is 0, which it equals).
uint rank_key(float v) {
  const uint u = floatBitsToUint(v == 0.0 ? 0.0 : v);
  return (u & 0x80000000u) != 0u ? ~u : u | 0x80000000u;
}

uint row() { return gl_WorkGroupID.y; }
uint slice_start() { return gl_WorkGroupID.x * p.per_block; }

uint source_count() {
  if (p.phase == 1u) return p.blocks * p.k;
  return min(p.width - slice_start(), p.per_block);
}

// Entry i of the workgroup's source: a column of its slice, or a candidate of its row.
void source_at(uint i, out float v, out uint id) {
  if (p.phase == 1u) {
    const uint at = (row() * p.blocks * p.k + i) * 2u;
    id = CAND[at];
    v = uintBitsToFloat(CAND[at + 1u]);
  } else {
    id = slice_start() + i;
    v = L[row() * p.width + id];
    if (isnan(v)) v = -1.0 / 0.0;
  }
}

// Rank j of the workgroup's selection (an entry past a short slice's end is (-inf, NONE)).
void emit(uint j, float v, uint id) {
  if (p.phase == 0u && p.blocks > 1u) {
    const uint at = ((row() * p.blocks + gl_WorkGroupID.x) * p.k + j) * 2u;
    CAND[at] = id;
    CAND[at + 1u] = floatBitsToUint(v);
  } else {
    const uint at = (row() * p.k + j) * 2u;
    OUT[at] = id;
    OUT[at + 1u] = id == NONE ? floatBitsToUint(v) : floatBitsToUint(L[row() * p.width + id]);
  }
}

void select_by_rounds(uint count) {
  const uint t = gl_LocalInvocationIndex;
  float pv = 1.0 / 0.0;
  uint pi = NONE;  // the previous pick; nothing ranks before (+inf, none) but +inf itself
  bool first = true;
  for (uint j = 0; j < p.k; ++j) {
    float bv = -1.0 / 0.0;
    uint bi = NONE;
    for (uint i = t; i < count; i += TWG) {
      float v;
      uint id;
      source_at(i, v, id);
      if (!first && !before(pv, pi, v, id)) continue;  // already picked
      if (bi == NONE || before(v, id, bv, bi)) {
        bv = v;
        bi = id;
      }
    }
    sv[t] = bv;
    si[t] = bi;
    barrier();
    for (uint s = TWG / 2; s > 0; s >>= 1) {
      if (t < s && si[t + s] != NONE && (si[t] == NONE || before(sv[t + s], si[t + s], sv[t], si[t]))) {
        sv[t] = sv[t + s];
        si[t] = si[t + s];
      }
      barrier();
    }
    pv = sv[0];
    pi = si[0];
    first = false;
    barrier();
    if (t == 0u) emit(j, pi == NONE ? -1.0 / 0.0 : pv, pi);
  }
}

// The key of the need-th best entry; found_need: how many of the best are equal to it,
// found_equal: how many are.
void radix_select(uint count, uint need) {
  const uint t = gl_LocalInvocationIndex;
  uint prefix = 0u;
  for (int shift = 24; shift >= 0; shift -= 8) {
    hist[t] = 0u;
    barrier();
    const uint high = shift == 24 ? 0u : 0xffffffffu << uint(shift + 8);
    for (uint i = t; i < count; i += TWG) {
      float v;
      uint id;
      source_at(i, v, id);
      const uint key = rank_key(v);
      if ((key & high) == prefix) atomicAdd(hist[(key >> uint(shift)) & 255u], 1u);
    }
    barrier();
    suffix[t] = hist[t];  // becomes the count of keys in bins >= t
    barrier();
    for (uint o = 1u; o < TWG; o <<= 1) {
      const uint add = t + o < TWG ? suffix[t + o] : 0u;
      barrier();
      suffix[t] += add;
      barrier();
    }
    const uint above = suffix[t] - hist[t];
    if (above < need && need <= suffix[t]) {
      found_key = prefix | (t << uint(shift));
      found_need = need - above;
      found_equal = hist[t];
    }
    barrier();
    prefix = found_key;
    need = found_need;
  }
}

void main() {
  const uint t = gl_LocalInvocationIndex;
  const uint count = source_count();
  if (p.k <= 4u) {
    select_by_rounds(count);
    return;
  }
  const uint kk = min(p.k, count);
  radix_select(count, kk);
  const uint kth = found_key;
  if (kk - found_need + found_equal > GATHER) {
    select_by_rounds(count);
    return;
  }
  if (t == 0u) n_gathered = 0u;
  barrier();
  for (uint i = t; i < count; i += TWG) {
    float v;
    uint id;
    source_at(i, v, id);
    if (rank_key(v) >= kth) {
      const uint g = atomicAdd(n_gathered, 1u);
      sv[g] = v;
      si[g] = id;
    }
  }
  barrier();
  const uint m = n_gathered;
  if (t < m) {
    uint rank = 0u;
    for (uint o = 0u; o < m; ++o) rank += before(sv[o], si[o], sv[t], si[t]) ? 1u : 0u;
    if (rank < kk) emit(rank, sv[t], si[t]);
  }
  for (uint j = kk + t; j < p.k; j += TWG) emit(j, -1.0 / 0.0, NONE);
}
