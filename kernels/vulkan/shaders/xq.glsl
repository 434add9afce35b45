// Writing x's integer form (matvec_dot.comp's top comment; numerics: xq.comp's) from a
// workgroup of 128 invocations that holds one 128-column tile column of x, one value per
// invocation: xq_store(tiles_c, base, tc, v) in uniform control flow (it has barriers). The
// includer defines XQ_WORDS, the name of a writeonly uint buffer; one row of x takes
// tiles_c XQ_TILE_WORDS words from word `base` on (xq_layout.glsl).
#ifndef SBITS_XQ_GLSL
#define SBITS_XQ_GLSL

#include "xq_layout.glsl"

shared float xq_val_[128];
shared uint xq_digits_[128];  // per column: hi in bits 0-7, lo in bits 8-15

// The word of digits (hi: half 0, lo: half 1) at word e of plane width P of unit u: byte b is
// the code class c of word k of the unit's plane (matvec_dot.comp).
uint digit_word(uint P, uint u, uint e, uint half_) {
  const uint n = 32u / P, classes = 8u / P, k = e / classes, c = e % classes;
  uint word = 0u;
  for (uint b = 0; b < 4u; ++b) {
    const uint idx = 2u * c + (b >> 1) + (b & 1u) * (n / 2u);
    word |= ((xq_digits_[u * 32u + k * n + idx] >> (8u * half_)) & 0xffu) << (8u * b);
  }
  return word;
}

// Column gl_LocalInvocationIndex of tile column tc is v: its digits, and unit's {d / 256, sum x}.
void xq_store(uint tiles_c, uint base, uint tc, float v) {
  const uint t = gl_LocalInvocationIndex, u = t / 32u;
  xq_val_[t] = v;
  barrier();
  float amax = 0.0, sum = 0.0;
  for (uint i = 0; i < 32u; ++i) {
    const float a = xq_val_[u * 32u + i];
    amax = max(amax, abs(a));
    sum += a;
  }
  int hi = 0, lo = 0;
  if (amax >= 7.8886091e-31) {
    const float s = v * (127.0 / amax);
    hi = int(roundEven(s));
    lo = clamp(int(roundEven((s - float(hi)) * 256.0)), -127, 127);
  } else {
    amax = 0.0;
  }
  xq_digits_[t] = (uint(hi) & 0xffu) | ((uint(lo) & 0xffu) << 8);
  if (t % 32u == 0u) {
    const uint m = base + tiles_c * XQ_TILE_DIGIT_WORDS + tc * XQ_TILE_META_WORDS + 2u * u;
    XQ_WORDS[m] = floatBitsToUint(amax / (127.0 * 256.0));
    XQ_WORDS[m + 1u] = floatBitsToUint(sum);
  }
  barrier();
  // 4 plane widths x 4 units x 16 words: two per invocation.
  for (uint i = t; i < XQ_TILE_DIGIT_WORDS; i += 128u)
    XQ_WORDS[base + tc * XQ_TILE_DIGIT_WORDS + i] = digit_word(1u << (i / 64u), (i / 16u) % 4u, i % 8u, (i % 16u) / 8u);
}

#endif
