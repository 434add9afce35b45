// Shared by the quantized-weight codecs: a function marker that makes the same header usable
// from host C++ and from CUDA device code, and an integer-only f16 -> f32 conversion.
//
// Everything under kernels/quant/ is header-only and depends on nothing but the C++ standard
// library, so that cpu/, cuda/ (nvcc) and the quantizer decode tiles with the same code.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SBITS_HD __host__ __device__
#else
#define SBITS_HD
#endif

namespace sbits::kernels::quant {

// IEEE binary16 -> binary32, exact. Integer-only so the result does not depend on
// flush-to-zero modes, and so that host and device agree bit for bit (scales are stored as
// f16; a subnormal scale must decode the same everywhere).
SBITS_HD inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant ? 0x400000u | (mant << 13) : 0u);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: mant * 2^-24; shift the leading one up to the implicit bit
    uint32_t e = 113;
    while (!(mant & 0x400u)) {
      mant <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace sbits::kernels::quant
