// Shared helpers for the CPU backend tests: backends for each ISA, random data with fixed
// seeds, and reference codecs written independently of kernels/cpu/half.h (from the formats'
// definitions, with ldexp), so the tests do not check the code against itself.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace sbits::kernels::test {

// Every ISA this machine can run: scalar always, avx2 when the CPU has it.
inline std::vector<CpuIsa> test_isas() {
  std::vector<CpuIsa> v{CpuIsa::scalar};
  if (cpu_supports_avx2()) v.push_back(CpuIsa::avx2);
  return v;
}

inline std::unique_ptr<Backend> make_backend(CpuIsa isa, int threads) {
  CpuBackendOptions o;
  o.n_threads = threads;
  o.isa = isa;
  return make_cpu_backend(o);
}

inline const WeightType kWeightTypes[] = {WeightType::f32, WeightType::f16, WeightType::bf16};

// IEEE binary16: s eeeee mmmmmmmmmm, bias 15.
inline double ref_f16_to_double(uint16_t h) {
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0x1f) return m ? std::nan("") : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(double(m), -24);
  return sign * std::ldexp(double(1024 + m), e - 25);
}

// bfloat16: s eeeeeeee mmmmmmm, bias 127.
inline double ref_bf16_to_double(uint16_t h) {
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  const int e = (h >> 7) & 0xff, m = h & 0x7f;
  if (e == 0xff) return m ? std::nan("") : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(double(m), -133);
  return sign * std::ldexp(double(128 + m), e - 134);
}

// Nearest binary16 code to a finite or infinite float, ties to even: with e = max(floor(log2
// |x|), -14) and quantum 2^(e-10), r = round_even(|x| / quantum) is exact in double, and the
// code is ((e + 15) << 10) + r - 1024 (which also covers subnormals, e = -14, and a round-up
// into the next binade). NaN is not handled here.
inline uint16_t ref_f32_to_f16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(double(f));
  if (std::isinf(a)) return sign | 0x7c00;
  if (a == 0) return sign;
  int ex = 0;
  std::frexp(a, &ex);  // a = m * 2^ex, m in [0.5, 1): floor(log2 a) = ex - 1, exactly
  const int e = std::max(ex - 1, -14);
  const double r = std::nearbyint(std::ldexp(a, 10 - e));
  const long code = (long(e + 15) << 10) + long(r) - 1024;
  return uint16_t(sign | (code >= 0x7c00 ? 0x7c00 : code));
}

inline uint16_t ref_f32_to_bf16(float f) {  // round to nearest even, finite inputs
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}

inline std::vector<float> random_floats(std::mt19937_64& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A weight in host memory at a chosen misalignment, and its exact values for references.
struct TestWeight {
  std::vector<uint8_t> storage;
  HostWeight host;
  std::vector<double> values;  // rows x cols, decoded
};

inline TestWeight make_weight(WeightType type, int64_t rows, int64_t cols, std::mt19937_64& rng,
                              size_t misalign = 0, float scale = 1.0f) {
  TestWeight t;
  const size_t n = size_t(rows * cols), eb = type == WeightType::f32 ? 4 : 2;
  t.storage.assign(n * eb + misalign + 8, 0);
  uint8_t* p = t.storage.data() + misalign;
  const std::vector<float> src = random_floats(rng, n, -scale, scale);
  t.values.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (type == WeightType::f32) {
      std::memcpy(p + 4 * i, &src[i], 4);
      t.values[i] = src[i];
    } else {
      const uint16_t h = type == WeightType::f16 ? ref_f32_to_f16(src[i]) : ref_f32_to_bf16(src[i]);
      std::memcpy(p + 2 * i, &h, 2);
      t.values[i] = type == WeightType::f16 ? ref_f16_to_double(h) : ref_bf16_to_double(h);
    }
  }
  t.host = HostWeight{type, rows, cols, p, n * eb};
  return t;
}

inline std::unique_ptr<Buffer> make_buffer(Backend& b, const std::vector<float>& v) {
  auto buf = b.alloc(v.size());
  b.write(*buf, v.data(), v.size());
  return buf;
}

inline std::vector<float> read_all(Backend& b, const Buffer& buf) {
  std::vector<float> v(buf.count);
  b.read(buf, v.data(), v.size());
  return v;
}

}  // namespace sbits::kernels::test
