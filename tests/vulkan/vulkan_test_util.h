// Helpers for the Vulkan backend tests: a CPU and a Vulkan backend fed the same data,
// comparisons with tolerances relative to the scale of the quantity compared, and the check
// that the validation layer (on through SBITS_VULKAN_VALIDATION=1 in ctest) reported nothing.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/vulkan/vulkan_backend.h"
#include "tests/kernels/cpu_test_util.h"

namespace sbits::kernels::test {

inline std::unique_ptr<Backend> make_vk() { return make_vulkan_backend(0); }

// No validation error so far on this backend.
inline void check_clean(const Backend& be) {
  const VulkanStats s = vulkan_stats(be);
  CHECK(s.validation_errors == 0);
}

// Sets an environment variable for the lifetime of the object (the backend reads its knobs
// when it is made).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

// max |a - b| / max(1, max |b|): an error relative to the scale of the reference.
inline double scaled_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0, scale = 1;
  for (float v : b) scale = std::max(scale, double(std::fabs(v)));
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::fabs(double(a[i]) - double(b[i]));
    if (std::isnan(e)) return INFINITY;
    worst = std::max(worst, e);
  }
  return worst / scale;
}

}  // namespace sbits::kernels::test

namespace sbits::kernels::test {

// max over i of |a - b| / max(|b|, 1e-6): relative error, absolute near zero.
inline double worst_rel_or_abs(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::fabs(double(a[i]) - double(b[i])) / std::max(std::fabs(double(b[i])), 1e-6);
    if (std::isnan(e)) return INFINITY;
    worst = std::max(worst, e);
  }
  return worst;
}

}  // namespace sbits::kernels::test

#include <span>

namespace sbits::kernels::test {

inline double max_abs_diff_span(std::span<const float> a, std::span<const float> b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::fabs(double(a[i]) - double(b[i]));
    if (std::isnan(e)) return INFINITY;
    worst = std::max(worst, e);
  }
  return worst;
}

}  // namespace sbits::kernels::test
