// Conversions between the float layouts f32, f16 and bf16, used by the importers while
// streaming. All narrowing conversions round to nearest, ties to even; NaN stays (quiet) NaN.
// A finite input that rounds past the target's largest finite value becomes infinity and is
// counted in ConvertStats::overflows, so the caller can refuse it (see SBITS.md "Importers").
#pragma once

#include <cstdint>

#include "formats/sbits_file.h"

namespace sbits {

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);

bool is_float_layout(Layout l);  // f32, f16, bf16

struct ConvertStats {
  uint64_t overflows = 0;   // finite inputs that became infinity
  float max_abs = 0.0f;     // largest finite |input| seen, for the error message
};

// Converts `count` elements from `from` to `to` (both float layouts; equal layouts copy).
// `src` and `dst` need no particular alignment and must not overlap.
// Throws FormatError if either layout is not a float layout.
void convert_floats(Layout from, Layout to, const uint8_t* src, uint8_t* dst, uint64_t count, ConvertStats* stats);

}  // namespace sbits
