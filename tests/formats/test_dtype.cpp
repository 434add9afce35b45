// Float conversions: exhaustive over all 65536 f16 and bf16 codes, and rounding at the edges.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>

#include "formats/dtype_convert.h"

using namespace sbits;

TEST_CASE("dtype: every f16 code survives f16 -> f32 -> f16, with exact values") {
  for (uint32_t c = 0; c < 65536; ++c) {
    const uint16_t h = static_cast<uint16_t>(c);
    const float f = f16_to_f32(h);
    const bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
    if (nan) {
      CHECK(std::isnan(f));
      CHECK(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    // Reference value: sign * mantissa * 2^(exp - 25) computed independently with ldexp.
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double ref = e == 0 ? std::ldexp(m, -24) : e == 31 ? INFINITY : std::ldexp(1024 + m, e - 25);
    if (h & 0x8000) ref = -ref;
    REQUIRE_MESSAGE(static_cast<double>(f) == ref, "code " << c);
    REQUIRE_MESSAGE(f32_to_f16(f) == h, "code " << c);
  }
}

TEST_CASE("dtype: every bf16 code survives bf16 -> f32 -> bf16") {
  for (uint32_t c = 0; c < 65536; ++c) {
    const uint16_t b = static_cast<uint16_t>(c);
    const float f = bf16_to_f32(b);
    if (std::isnan(f)) {
      CHECK(std::isnan(bf16_to_f32(f32_to_bf16(f))));
      continue;
    }
    REQUIRE_MESSAGE(f32_to_bf16(f) == b, "code " << c);
  }
}

TEST_CASE("dtype: round to nearest, ties to even") {
  // f16: 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
  CHECK(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);  // tie -> even mantissa 2
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3c01);  // above the tie
  // Largest finite f16 is 65504; 65519.99 rounds down to it, 65520 (the tie) rounds to infinity.
  CHECK(f32_to_f16(65504.0f) == 0x7bff);
  CHECK(f32_to_f16(65519.0f) == 0x7bff);
  CHECK(f32_to_f16(65520.0f) == 0x7c00);
  CHECK(f32_to_f16(-1e10f) == 0xfc00);
  // Subnormals: the smallest f16 subnormal is 2^-24; half of it ties to zero (even).
  CHECK(f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);
  CHECK(f32_to_f16(std::ldexp(3.0f, -25)) == 0x0002);
  CHECK(f32_to_f16(-0.0f) == 0x8000);
  // bf16: 1 + 2^-8 is the tie between 1 and 1 + 2^-7.
  CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);
  CHECK(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
  CHECK(f32_to_bf16(std::bit_cast<float>(0x7f7fffffu)) == 0x7f80);  // FLT_MAX overflows to inf
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::bit_cast<float>(0x7f800001u)))));  // signalling NaN stays NaN
}

TEST_CASE("dtype: convert_floats counts overflows and works on unaligned buffers") {
  const float in[4] = {1.0f, 70000.0f, -1e6f, INFINITY};
  uint8_t src[17], dst[9];
  std::memcpy(src + 1, in, sizeof in);
  ConvertStats st;
  convert_floats(Layout::f32, Layout::f16, src + 1, dst + 1, 4, &st);
  CHECK(st.overflows == 2);  // the infinity was already infinite
  CHECK(st.max_abs == 1e6f);
  uint16_t out[4];
  std::memcpy(out, dst + 1, sizeof out);
  CHECK(out[0] == 0x3c00);
  CHECK(out[3] == 0x7c00);
  // bf16 -> f16 goes through f32; f16 -> f32 is exact.
  uint16_t b = f32_to_bf16(0.5f), h;
  convert_floats(Layout::bf16, Layout::f16, reinterpret_cast<uint8_t*>(&b), reinterpret_cast<uint8_t*>(&h), 1, nullptr);
  CHECK(h == 0x3800);
  CHECK_THROWS_AS(convert_floats(Layout::u8, Layout::f32, src, dst, 1, nullptr), FormatError);
}
