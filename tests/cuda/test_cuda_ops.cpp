// Every row-wise and element-wise op and the dense matmul of the CUDA backend against the CPU
// backend on the same random inputs, at awkward sizes. Tolerances (stated per test) are
// relative to the scale of the result: element conversions are exact; rmsnorm, rope, swiglu
// differ only in the last bits of library functions (sqrt, sin/cos, exp); matmuls sum in
// another order (f32) or take x rounded to f16/bf16 (cuBLAS prefill).
#include <doctest/doctest.h>

#include <cstring>

#include "tests/cuda/cuda_test_util.h"

namespace sbits::kernels::test {
namespace {

std::vector<float> run_read(Backend& be, const Buffer& b) { return read_all(be, b); }

}  // namespace

TEST_CASE("cuda: device description names the GPU") {
  auto gpu = make_cuda();
  const std::string d = gpu->device_description();
  INFO(d);
  CHECK(gpu->name() == "cuda");
  CHECK(d.find("sm_") != std::string::npos);
  CHECK(d.find("SMs") != std::string::npos);
}

TEST_CASE("cuda: write and read round-trip with offsets; bad ranges are refused") {
  auto gpu = make_cuda();
  std::mt19937_64 rng(1);
  for (size_t n : {size_t(1), size_t(17), size_t(1000), size_t(3u << 20)}) {  // the last bypasses staging
    const std::vector<float> v = random_floats(rng, n);
    auto b = gpu->alloc(n + 5);
    gpu->write(*b, v.data(), n, 3);
    std::vector<float> back(n);
    gpu->read(*b, back.data(), n, 3);
    CHECK(std::memcmp(back.data(), v.data(), n * 4) == 0);
  }
  auto b = gpu->alloc(10);
  float x[4] = {};
  CHECK_THROWS_WITH_AS(gpu->write(*b, x, 4, 8), doctest::Contains("exceeds the buffer's 10 floats"), KernelError);
  CHECK_THROWS_WITH_AS(gpu->read(*b, x, 11, 0), doctest::Contains("exceeds"), KernelError);
  auto cpu = make_cpu_backend(1);
  auto foreign = cpu->alloc(10);
  CHECK_THROWS_WITH_AS(gpu->read(*foreign, x, 1, 0), doctest::Contains("not a CUDA backend buffer"), KernelError);
}

TEST_CASE("cuda: embed equals the CPU exactly for f32, f16 and bf16 tables") {
  auto cpu = make_cpu_backend(2);
  auto gpu = make_cuda();
  std::mt19937_64 rng(2);
  for (WeightType t : kWeightTypes) {
    for (int64_t cols : {1, 7, 64, 301}) {
      TestWeight w = make_weight(t, 50, cols, rng);
      auto wc = cpu->upload(w.host), wg = gpu->upload(w.host);
      const std::vector<int32_t> ids = {0, 49, 7, 7, 23, 1, 48};
      auto oc = cpu->alloc(ids.size() * cols), og = gpu->alloc(ids.size() * cols);
      cpu->embed(*wc, ids.data(), int(ids.size()), *oc);
      gpu->embed(*wg, ids.data(), int(ids.size()), *og);
      INFO(weight_type_name(t), " cols ", cols);
      CHECK(run_read(*gpu, *og) == run_read(*cpu, *oc));
    }
  }
  TestWeight w = make_weight(WeightType::f32, 5, 4, rng);
  auto wg = gpu->upload(w.host);
  auto out = gpu->alloc(8);
  const int32_t bad[2] = {1, 5};
  CHECK_THROWS_WITH_AS(gpu->embed(*wg, bad, 2, *out), doctest::Contains("ids[1] = 5 is outside"), KernelError);
}

TEST_CASE("cuda: rmsnorm matches the CPU (1e-6 relative), in place too") {
  auto cpu = make_cpu_backend(2);
  auto gpu = make_cuda();
  std::mt19937_64 rng(3);
  for (WeightType t : kWeightTypes) {
    for (int64_t width : {1, 7, 64, 100, 4096, 5003}) {
      for (int n : {1, 3, 17}) {
        TestWeight w = make_weight(t, 1, width, rng);
        const std::vector<float> x = random_floats(rng, size_t(n * width), -3.0f, 3.0f);
        auto wc = cpu->upload(w.host), wg = gpu->upload(w.host);
        auto xc = make_buffer(*cpu, x), xg = make_buffer(*gpu, x);
        auto oc = cpu->alloc(x.size()), og = gpu->alloc(x.size());
        cpu->rmsnorm(*xc, *wc, 1e-5f, n, *oc);
        gpu->rmsnorm(*xg, *wg, 1e-5f, n, *og);
        cpu->rmsnorm(*xc, *wc, 1e-6f, n, *xc);  // in place
        gpu->rmsnorm(*xg, *wg, 1e-6f, n, *xg);
        INFO(weight_type_name(t), " width ", width, " n ", n);
        CHECK(worst_rel(run_read(*gpu, *og), run_read(*cpu, *oc), {}) <= 1e-6);
        CHECK(worst_rel(run_read(*gpu, *xg), run_read(*cpu, *xc), {}) <= 1e-6);
      }
    }
  }
}

TEST_CASE("cuda: rope matches the CPU (2e-6 of the vector's scale) for both styles and large positions") {
  auto cpu = make_cpu_backend(2);
  auto gpu = make_cuda();
  std::mt19937_64 rng(4);
  for (RopeStyle style : {RopeStyle::neox, RopeStyle::interleaved}) {
    for (int head_dim : {2, 8, 64, 128}) {
      const int n_heads = 3, n = 5;
      const std::vector<RowInfo> rows = {{0, 0}, {1, 1}, {0, 17}, {2, 4095}, {1, 100000}};
      const std::vector<float> x = random_floats(rng, size_t(n * n_heads * head_dim));
      auto xc = make_buffer(*cpu, x), xg = make_buffer(*gpu, x);
      cpu->rope(*xc, n, n_heads, head_dim, rows.data(), 10000.0f, style);
      gpu->rope(*xg, n, n_heads, head_dim, rows.data(), 10000.0f, style);
      INFO("head_dim ", head_dim, " neox ", style == RopeStyle::neox);
      CHECK(max_abs_diff(run_read(*gpu, *xg), run_read(*cpu, *xc)) <= 2e-6);
    }
  }
}

TEST_CASE("cuda: swiglu (1e-6 relative), add and get_rows (exact) match the CPU") {
  auto cpu = make_cpu_backend(2);
  auto gpu = make_cuda();
  std::mt19937_64 rng(5);
  for (size_t count : {size_t(0), size_t(1), size_t(1000), size_t(100003)}) {
    const std::vector<float> g = random_floats(rng, count + 1, -30.0f, 30.0f), u = random_floats(rng, count + 1);
    auto gc = make_buffer(*cpu, g), uc = make_buffer(*cpu, u), gg = make_buffer(*gpu, g), ug = make_buffer(*gpu, u);
    cpu->swiglu(*gc, *uc, count, *gc);  // out aliases gate, as the engine calls it
    gpu->swiglu(*gg, *ug, count, *gg);
    INFO("count ", count);
    CHECK(worst_rel(run_read(*gpu, *gg), run_read(*cpu, *gc), {}) <= 1e-6);
    const std::vector<float> a = random_floats(rng, count + 1), b = random_floats(rng, count + 1);
    auto ac = make_buffer(*cpu, a), bc = make_buffer(*cpu, b), ag = make_buffer(*gpu, a), bg = make_buffer(*gpu, b);
    cpu->add(*ac, *bc, count);
    gpu->add(*ag, *bg, count);
    CHECK(run_read(*gpu, *ag) == run_read(*cpu, *ac));
  }
  const int width = 37;
  const std::vector<float> x = random_floats(rng, 9 * width);
  auto xc = make_buffer(*cpu, x), xg = make_buffer(*gpu, x);
  const std::vector<int32_t> pick = {8, 0, 3, 3};
  auto oc = cpu->alloc(pick.size() * width), og = gpu->alloc(pick.size() * width);
  cpu->get_rows(*xc, pick.data(), int(pick.size()), width, *oc);
  gpu->get_rows(*xg, pick.data(), int(pick.size()), width, *og);
  CHECK(run_read(*gpu, *og) == run_read(*cpu, *oc));
  const int32_t bad = 9;
  CHECK_THROWS_WITH_AS(gpu->get_rows(*xg, &bad, 1, width, *og), doctest::Contains("src_rows[0] = 9"), KernelError);
}

// y = x W^T (+ y0) on both backends; the error is taken relative to sum |w x| per output.
void check_dense_matmul(Backend& cpu, Backend& gpu, WeightType t, int64_t rows, int64_t cols, int n, bool acc,
                        double tol, std::mt19937_64& rng) {
  TestWeight w = make_weight(t, rows, cols, rng);
  const std::vector<float> x = random_floats(rng, size_t(n * cols)), y0 = random_floats(rng, size_t(n * rows));
  auto wc = cpu.upload(w.host), wg = gpu.upload(w.host);
  auto xc = make_buffer(cpu, x), xg = make_buffer(gpu, x), yc = make_buffer(cpu, y0), yg = make_buffer(gpu, y0);
  cpu.matmul(*wc, *xc, n, *yc, acc);
  gpu.matmul(*wg, *xg, n, *yg, acc);
  std::vector<double> scale(size_t(n * rows));
  for (int j = 0; j < n; ++j)
    for (int64_t o = 0; o < rows; ++o) {
      double s = acc ? std::fabs(y0[size_t(j * rows + o)]) : 0.0;
      for (int64_t i = 0; i < cols; ++i) s += std::fabs(w.values[size_t(o * cols + i)] * x[size_t(j * cols + i)]);
      scale[size_t(j * rows + o)] = s;
    }
  INFO(weight_type_name(t), " ", rows, " x ", cols, " n ", n, " accumulate ", acc);
  CHECK(worst_rel(read_all(gpu, *yg), read_all(cpu, *yc), scale) <= tol);
}

TEST_CASE("cuda: dense matmul matches the CPU (f32 math 1e-5; prefill of f16 2e-3, bf16 1e-2)") {
  auto cpu = make_cpu_backend(2);
  auto gpu = make_cuda();
  std::mt19937_64 rng(6);
  struct Shape {
    int64_t rows, cols;
  };
  for (WeightType t : kWeightTypes) {
    for (Shape s : {Shape{1, 1}, Shape{7, 9}, Shape{64, 64}, Shape{100, 300}, Shape{33, 128}, Shape{300, 4096}}) {
      for (int n : {1, 2, 5, 8, 9, 40}) {
        const double tol = n <= 8 || t == WeightType::f32 ? 1e-5 : t == WeightType::f16 ? 2e-3 : 1e-2;
        check_dense_matmul(*cpu, *gpu, t, s.rows, s.cols, n, n % 2 == 1, tol, rng);
      }
    }
  }
}

TEST_CASE("cuda: matmul argument errors name the problem") {
  auto gpu = make_cuda();
  std::mt19937_64 rng(7);
  TestWeight w = make_weight(WeightType::f16, 8, 16, rng);
  auto wg = gpu->upload(w.host);
  auto x = gpu->alloc(16), y = gpu->alloc(8);
  CHECK_THROWS_WITH_AS(gpu->matmul(*wg, *x, 2, *y, false), doctest::Contains("x holds 16 floats"), KernelError);
  CHECK_THROWS_WITH_AS(gpu->matmul(*wg, *x, 1, *x, false), doctest::Contains("must not be the same buffer"),
                       KernelError);
  HostWeight bad = w.host;
  bad.bytes = 10;
  CHECK_THROWS_WITH_AS(gpu->upload(bad), doctest::Contains("needs 256 bytes, got 10"), KernelError);
}

}  // namespace sbits::kernels::test
