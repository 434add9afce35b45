// Scalar conversions between f32 and the 16-bit float formats, bit-exact with the x86 F16C
// instructions (vcvtph2ps / vcvtps2ph with round-to-nearest-even), so the scalar and AVX2
// paths produce identical values.
//
//   f16  (IEEE binary16): s eeeee mmmmmmmmmm        bias 15, subnormals, inf, NaN
//   bf16 (bfloat16):      s eeeeeeee mmmmmmm        the top half of an f32
//
// Integer-only so the result does not depend on the FPU's flush-to-zero / denormals-are-zero
// modes. NaNs come out quiet with their payload's top bits kept, as the hardware does.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace sbits::kernels::cpu {

inline float bits_to_f32(uint32_t u) { return std::bit_cast<float>(u); }
inline uint32_t f32_to_bits(float f) { return std::bit_cast<uint32_t>(f); }

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) {  // inf, or NaN made quiet (bit 22) with the payload shifted up
    return bits_to_f32(sign | 0x7f800000u | (mant != 0 ? 0x400000u | (mant << 13) : 0u));
  }
  if (exp != 0) return bits_to_f32(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return bits_to_f32(sign);
  // Subnormal: mant * 2^-24. Normalize so the leading one becomes the implicit bit.
  const int shift = std::countl_zero(mant) - 21;  // brings the leading one to bit 10
  const uint32_t m = (mant << shift) & 0x3ffu;
  return bits_to_f32(sign | (uint32_t(113 - shift) << 23) | (m << 13));
}

inline uint16_t f32_to_f16(float f) {
  uint32_t x = f32_to_bits(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) {  // inf, or NaN: quiet bit set, top 9 payload bits kept
    return uint16_t(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u | ((x >> 13) & 0x3ffu) : 0u));
  }
  if (x >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (x >= 0x38800000u) {                                  // normal half: >= 2^-14
    uint32_t h = (x >> 13) - (112u << 10);
    const uint32_t rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is right
    return uint16_t(sign | h);
  }
  // Subnormal half (or zero): value = m * 2^(e-150) = q * 2^-24, q = m >> (126 - e).
  const uint32_t e = x >> 23;
  if (e < 102) return sign;  // < 2^-25: rounds to zero (2^-25 itself ties to even = 0)
  const uint32_t m = (x & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - e;  // 14..24
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;  // q may reach 1024 = smallest normal
  return uint16_t(sign | q);
}

// Loads a 16-bit code from a possibly unaligned address.
inline uint16_t load_u16(const void* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline float load_f32(const void* p) {
  float v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace sbits::kernels::cpu
