// Shared helpers of the sbits compute shaders. Included after `#define WG <workgroup size>`.
// SBITS_SUBGROUPS (set by the build for the subgroup variant of each shader) switches the
// workgroup reductions from a shared-memory tree to subgroup arithmetic.
#ifndef SBITS_COMMON_GLSL
#define SBITS_COMMON_GLSL

#if SBITS_SUBGROUPS
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

// Dense element types, as WeightType: 0 f32, 1 f16, 2 bf16. 16-bit elements are read as the
// half of a 32-bit word (no 16-bit storage feature needed).
float f16_at(uint word, uint i) { return unpackHalf2x16(word >> ((i & 1u) * 16u)).x; }
float bf16_at(uint word, uint i) { return uintBitsToFloat(((word >> ((i & 1u) * 16u)) & 0xffffu) << 16); }
#define DENSE_AT(arr, T, i) \
  ((T) == 0u ? uintBitsToFloat(arr[(i)]) : (T) == 1u ? f16_at(arr[(i) >> 1], (i)) : bf16_at(arr[(i) >> 1], (i)))
// Element i of a KV cache whose type is the includer's specialization constant KVT (KvType:
// 0 f16, 1 f32); attention.comp and attention_prefill.comp read the cache through it.
#define KV_LOAD(arr, i) (KVT == 0 ? f16_at(arr[(i) >> 1], (i)) : uintBitsToFloat(arr[(i)]))

// As the CPU's silu: sigmoid from e = exp(-|g|) <= 1 so nothing overflows.
float silu(float g) {
  const float e = exp(-abs(g));
  const float sig = g >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
  return sig == 0.0 ? -0.0 : g * sig;
}

// f32 -> IEEE binary16 bits, round to nearest even, integer-only: bit-exact with the CPU
// backend (kernels/cpu/half.h). packHalf2x16's rounding is left to the implementation (Mesa
// may truncate), which would make the f16 KV caches of the two backends differ.
uint f32_to_f16_rne(float f) {
  uint x = floatBitsToUint(f);
  const uint sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return sign | 0x7c00u | (x > 0x7f800000u ? 0x200u | ((x >> 13) & 0x3ffu) : 0u);
  if (x >= 0x477ff000u) return sign | 0x7c00u;
  if (x >= 0x38800000u) {
    uint h = (x >> 13) - (112u << 10);
    const uint rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u)) ++h;
    return sign | h;
  }
  const uint e = x >> 23;
  if (e < 102u) return sign;
  const uint m = (x & 0x7fffffu) | 0x800000u;
  const uint shift = 126u - e;
  uint q = m >> shift;
  const uint rem = m & ((1u << shift) - 1u), half_ = 1u << (shift - 1u);
  if (rem > half_ || (rem == half_ && (q & 1u) != 0u)) ++q;
  return sign | q;
}
uint pack_f16x2_rne(float a, float b) { return f32_to_f16_rne(a) | (f32_to_f16_rne(b) << 16); }

#ifdef WG
shared float red_[WG];

// Sum / max over the workgroup; every invocation must call it (it has barriers) and gets the
// result. The order of the sum is fixed, so results are deterministic.
float wg_sum(float v) {
#if SBITS_SUBGROUPS
  v = subgroupAdd(v);
  if (subgroupElect()) red_[gl_SubgroupID] = v;
  barrier();
  float s = 0.0;
  for (uint i = 0; i < gl_NumSubgroups; ++i) s += red_[i];
  barrier();
  return s;
#else
  const uint t = gl_LocalInvocationIndex;
  red_[t] = v;
  barrier();
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (t < s) red_[t] += red_[t + s];
    barrier();
  }
  const float r = red_[0];
  barrier();
  return r;
#endif
}

float wg_max(float v) {
#if SBITS_SUBGROUPS
  v = subgroupMax(v);
  if (subgroupElect()) red_[gl_SubgroupID] = v;
  barrier();
  float s = red_[0];
  for (uint i = 1; i < gl_NumSubgroups; ++i) s = max(s, red_[i]);
  barrier();
  return s;
#else
  const uint t = gl_LocalInvocationIndex;
  red_[t] = v;
  barrier();
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (t < s) red_[t] = max(red_[t], red_[t + s]);
    barrier();
  }
  const float r = red_[0];
  barrier();
  return r;
#endif
}
#endif

// Flat index of this invocation over a 2-D grid of 1-D workgroups of 256 (grids above 65535
// groups are split into y rows by the host). The size is spelled out: gl_WorkGroupSize is not
// yet known where this file is included (before the shader's local_size declaration).
uint flat_index() { return (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * 256u + gl_LocalInvocationID.x; }

#endif
