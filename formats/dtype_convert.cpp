#include "formats/dtype_convert.h"

#include <bit>
#include <cmath>
#include <cstring>

namespace sbits {

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise into a binary32 normal number (exact)
      uint32_t e = 113;
      while (!(mant & 0x400)) {
        mant <<= 1;
        --e;
      }
      bits = sign | (e << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

// Round-to-nearest-even by integer arithmetic (after F. Giesen's float_to_half_fast3_rtne):
// adding 0xfff plus the lowest kept bit rounds ties to even, and a carry out of the mantissa
// correctly bumps the exponent, up to infinity for values >= 65520.
uint16_t f32_to_f16(float f) {
  constexpr uint32_t f32_inf = 255u << 23;
  constexpr uint32_t f16_overflow = (127u + 16) << 23;  // 65536.0f: always rounds to inf
  constexpr uint32_t denorm_magic = ((127u - 15) + (23 - 10) + 1) << 23;
  uint32_t x = std::bit_cast<uint32_t>(f);
  uint32_t sign = x & 0x80000000u;
  x ^= sign;
  uint32_t o;
  if (x >= f16_overflow) {
    o = x > f32_inf ? (0x7e00u | ((x >> 13) & 0x3ff)) : 0x7c00u;  // NaN stays NaN (quiet), else inf
  } else if (x < (113u << 23)) {
    // Below 2^-14: f16 subnormal. Adding a magic float makes the FPU's own round-to-nearest-even
    // align the mantissa.
    float t = std::bit_cast<float>(x) + std::bit_cast<float>(denorm_magic);
    o = std::bit_cast<uint32_t>(t) - denorm_magic;
  } else {
    uint32_t mant_odd = (x >> 13) & 1;
    x += ((15u - 127u) << 23) + 0xfff;
    x += mant_odd;
    o = x >> 13;
  }
  return static_cast<uint16_t>(o | (sign >> 16));
}

float bf16_to_f32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint16_t f32_to_bf16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1);  // ties to even; overflow carries into inf
  return static_cast<uint16_t>(x >> 16);
}

bool is_float_layout(Layout l) { return l == Layout::f32 || l == Layout::f16 || l == Layout::bf16; }

namespace {

float load(Layout l, const uint8_t* p) {
  if (l == Layout::f32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return l == Layout::f16 ? f16_to_f32(h) : bf16_to_f32(h);
}

// Stores v; returns true when a finite v became infinite.
bool store(Layout l, float v, uint8_t* p) {
  if (l == Layout::f32) {
    std::memcpy(p, &v, 4);
    return false;
  }
  uint16_t h = l == Layout::f16 ? f32_to_f16(v) : f32_to_bf16(v);
  std::memcpy(p, &h, 2);
  uint16_t inf = l == Layout::f16 ? 0x7c00 : 0x7f80;
  return (h & 0x7fff) == inf && std::isfinite(v);
}

}  // namespace

void convert_floats(Layout from, Layout to, const uint8_t* src, uint8_t* dst, uint64_t count, ConvertStats* stats) {
  if (!is_float_layout(from) || !is_float_layout(to)) {
    throw FormatError(std::string("convert: expected float layouts (f32, f16, bf16), found ") +
                      (layout_name(static_cast<uint32_t>(from)) ? layout_name(static_cast<uint32_t>(from)) : "?") + " -> " +
                      (layout_name(static_cast<uint32_t>(to)) ? layout_name(static_cast<uint32_t>(to)) : "?"));
  }
  const uint64_t in = plain_layout_bytes(from, 1), out = plain_layout_bytes(to, 1);
  if (from == to) {
    std::memcpy(dst, src, count * in);
    return;
  }
  uint64_t overflows = 0;
  float max_abs = 0.0f;
  for (uint64_t i = 0; i < count; ++i) {
    float v = load(from, src + i * in);
    if (std::isfinite(v)) max_abs = std::max(max_abs, std::fabs(v));
    overflows += store(to, v, dst + i * out);
  }
  if (stats) {
    stats->overflows += overflows;
    stats->max_abs = std::max(stats->max_abs, max_abs);
  }
}

}  // namespace sbits
