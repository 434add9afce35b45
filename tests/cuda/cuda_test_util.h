// Helpers for the CUDA backend tests: a CPU and a CUDA backend fed the same data, and
// comparisons with tolerances relative to the scale of the quantity compared.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/kernels/cpu_test_util.h"

namespace sbits::kernels::test {

inline std::unique_ptr<Backend> make_cuda() { return make_cuda_backend(0); }

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

// Largest |a[i] - b[i]| / (scale[i] + tiny), with NaN counting as infinitely bad.
inline double worst_rel(const std::vector<float>& a, const std::vector<float>& b, const std::vector<double>& scale) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double s = scale.empty() ? std::fabs(double(b[i])) : scale[i];
    const double e = std::fabs(double(a[i]) - double(b[i])) / (s + 1e-30);
    if (std::isnan(e) || std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    worst = std::max(worst, std::isnan(a[i]) ? 0.0 : e);
  }
  return worst;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
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
