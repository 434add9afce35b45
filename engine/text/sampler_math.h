// Portable randomness and exponentials for the sampler. Internal to engine/text.
//
// The sampler promises the same choices for the same seed and logits on every platform, so
// nothing here comes from the standard library's unspecified parts: the generator is
// xoshiro256** seeded through splitmix64 (both fully specified integer algorithms), the uniform
// double is built from the top 53 bits, and exp is our own, made of IEEE basic operations only
// (libm's exp may differ in the last bit between C libraries, which can flip a draw).
#pragma once

#include <cstdint>
#include <cstring>

namespace sbits::text_detail {

class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed) { reseed(seed); }
  void reseed(uint64_t seed);
  uint64_t next();
  // Uniform in [0, 1): the top 53 bits of next() times 2^-53, exactly representable.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t s_[4];
};

// exp(x) for x <= 0 in float (the sampler only exponentiates logit - max), relative error about
// 4e-7; 0 for x < -86 (keeps every result a normal float) and for -inf/NaN. Every step is an IEEE
// basic operation or an exact conversion, so the bits are the same on every platform, and
// there are no branches or library calls, so loops over it vectorise. Files that use it are
// compiled with -ffp-contract=off: a fused multiply-add would round differently.
inline float portable_exp_nonpositive(float x) {
  // Selects, not branches, and every operation done unconditionally: that is what lets the
  // compiler vectorise a loop over this (trapping-math forbids it to speculate otherwise).
  const bool tiny = !(x >= -86.0f);  // also -inf and NaN
  x = x > 0.0f ? 0.0f : x;
  x = tiny ? 0.0f : x;
  // x = k ln2 + r, |r| <= ln2/2; ln2 in two parts so that k * kLn2Hi is exact (|k| <= 125).
  constexpr float kLog2e = 1.44269504f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  const float y = x * kLog2e - 0.5f;   // k = ceil(y) = round-half-down of x log2(e), y < 0
  int32_t k = static_cast<int32_t>(y);  // truncation toward zero = ceil for y <= 0
  const float kf = static_cast<float>(k);
  const float r = (x - kf * kLn2Hi) - kf * kLn2Lo;
  // Taylor series to r^7: truncation error 0.35^8 / 8! < 5e-9.
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^k built from its bits (k >= -124 here), and p >= 0.7: the product stays a normal float,
  // so flush-to-zero modes cannot change it.
  const uint32_t bits = static_cast<uint32_t>(k + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float result = p * scale;
  return tiny ? 0.0f : result;
}

}  // namespace sbits::text_detail
