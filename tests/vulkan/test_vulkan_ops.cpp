// The row-wise and element-wise ops and top_k of the Vulkan backend against the CPU backend on
// the same random inputs, at awkward sizes. Tolerances (per test) are relative to the scale
// of the result: element conversions and copies are exact; rmsnorm sums in f32 in another
// order (the CPU sums in double): 1e-5; rope uses the same host-computed cos/sin, differing
// only by a possible FMA: 1e-6; swiglu differs in the last bits of exp (a few ulp): 4e-6; add is exact.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "tests/vulkan/vulkan_test_util.h"

namespace sbits::kernels::test {

TEST_CASE("vulkan: device list and description") {
  const auto devs = vulkan_devices();
  REQUIRE(!devs.empty());
  for (size_t i = 1; i < devs.size(); ++i)  // discrete GPUs come first
    CHECK((devs[i - 1].type == "discrete" || devs[i].type != "discrete"));
  auto vk = make_vk();
  CHECK(vk->name() == "vulkan");
  CHECK(vk->device_description().find(devs[0].name) != std::string::npos);
  CHECK_THROWS_WITH_AS(make_vulkan_backend(int(devs.size())), doctest::Contains("does not exist"), KernelError);
  check_clean(*vk);
}

TEST_CASE("vulkan: write and read round-trip with offsets; bad ranges are refused") {
  auto vk = make_vk();
  std::mt19937_64 rng(1);
  for (size_t n : {size_t(1), size_t(17), size_t(1000), size_t(5u << 20)}) {  // the last bypasses the ring
    const std::vector<float> v = random_floats(rng, n);
    auto b = vk->alloc(n + 5);
    vk->write(*b, v.data(), n, 3);
    std::vector<float> back(n);
    vk->read(*b, back.data(), n, 3);
    CHECK(std::memcmp(back.data(), v.data(), n * 4) == 0);
    float edge[3];
    vk->read(*b, edge, 3, 0);  // never written: zero
    CHECK((edge[0] == 0 && edge[1] == 0 && edge[2] == 0));
  }
  auto b = vk->alloc(10);
  float x[4] = {};
  CHECK_THROWS_WITH_AS(vk->write(*b, x, 4, 8), doctest::Contains("exceeds the buffer's 10 floats"), KernelError);
  CHECK_THROWS_WITH_AS(vk->read(*b, x, 11, 0), doctest::Contains("exceeds"), KernelError);
  auto cpu = make_cpu_backend(1);
  auto foreign = cpu->alloc(10);
  CHECK_THROWS_WITH_AS(vk->read(*foreign, x, 1, 0), doctest::Contains("not a Vulkan backend buffer"), KernelError);
  check_clean(*vk);
}

TEST_CASE("vulkan: embed and get_rows equal the CPU exactly") {
  auto cpu = make_cpu_backend(2);
  auto vk = make_vk();
  std::mt19937_64 rng(2);
  for (WeightType t : kWeightTypes) {
    for (int64_t cols : {1, 7, 64, 301}) {
      TestWeight w = make_weight(t, 50, cols, rng, 2);
      auto wc = cpu->upload(w.host), wg = vk->upload(w.host);
      const std::vector<int32_t> ids = {0, 49, 7, 7, 23, 1, 48};
      auto oc = cpu->alloc(ids.size() * cols), og = vk->alloc(ids.size() * cols);
      cpu->embed(*wc, ids.data(), int(ids.size()), *oc);
      vk->embed(*wg, ids.data(), int(ids.size()), *og);
      INFO(weight_type_name(t), " cols ", cols);
      CHECK(read_all(*vk, *og) == read_all(*cpu, *oc));
      // get_rows picks rows of what embed produced.
      const std::vector<int32_t> pick = {6, 0, 3, 3};
      auto gc = cpu->alloc(pick.size() * cols), gg = vk->alloc(pick.size() * cols);
      cpu->get_rows(*oc, pick.data(), int(pick.size()), int(cols), *gc);
      vk->get_rows(*og, pick.data(), int(pick.size()), int(cols), *gg);
      CHECK(read_all(*vk, *gg) == read_all(*cpu, *gc));
    }
  }
  TestWeight w = make_weight(WeightType::f32, 5, 4, rng);
  auto wg = vk->upload(w.host);
  auto out = vk->alloc(8);
  const int32_t bad[2] = {1, 5};
  CHECK_THROWS_WITH_AS(vk->embed(*wg, bad, 2, *out), doctest::Contains("ids[1] = 5 is outside"), KernelError);
  CHECK_THROWS_WITH_AS(vk->get_rows(*out, bad, 2, 4, *out), doctest::Contains("same buffer"), KernelError);
  check_clean(*vk);
}

TEST_CASE("vulkan: rmsnorm matches the CPU (1e-5), in place too") {
  auto cpu = make_cpu_backend(2);
  auto vk = make_vk();
  std::mt19937_64 rng(3);
  for (WeightType t : kWeightTypes) {
    for (int64_t width : {1, 7, 64, 100, 4096, 5003, 8200}) {  // 8200: vec4 rows past one block
      for (int n : {1, 3, 17}) {
        TestWeight w = make_weight(t, 1, width, rng);
        const std::vector<float> x = random_floats(rng, size_t(n * width), -3.0f, 3.0f);
        auto wc = cpu->upload(w.host), wg = vk->upload(w.host);
        auto xc = make_buffer(*cpu, x), xg = make_buffer(*vk, x);
        auto oc = cpu->alloc(x.size()), og = vk->alloc(x.size());
        cpu->rmsnorm(*xc, *wc, 1e-5f, n, *oc);
        vk->rmsnorm(*xg, *wg, 1e-5f, n, *og);
        vk->rmsnorm(*xg, *wg, 1e-5f, n, *xg);  // in place
        INFO(weight_type_name(t), " width ", width, " n ", n);
        CHECK(scaled_diff(read_all(*vk, *og), read_all(*cpu, *oc)) <= 1e-5);
        CHECK(read_all(*vk, *xg) == read_all(*vk, *og));
      }
    }
  }
  check_clean(*vk);
}

TEST_CASE("vulkan: rope, neox and interleaved, matches the CPU (1e-6) up to large positions") {
  auto cpu = make_cpu_backend(2);
  auto vk = make_vk();
  std::mt19937_64 rng(4);
  for (RopeStyle style : {RopeStyle::neox, RopeStyle::interleaved}) {
    for (int head_dim : {2, 8, 64, 128}) {
      for (int n : {1, 5, 40}) {
        const int n_heads = 3;
        std::vector<RowInfo> rows(static_cast<size_t>(n));
        for (int r = 0; r < n; ++r) rows[size_t(r)] = {0, r == 1 ? 100000 : int32_t(rng() % 4096)};
        const std::vector<float> x = random_floats(rng, size_t(n * n_heads * head_dim));
        auto xc = make_buffer(*cpu, x), xg = make_buffer(*vk, x);
        cpu->rope(*xc, n, n_heads, head_dim, rows.data(), 10000.0f, style);
        vk->rope(*xg, n, n_heads, head_dim, rows.data(), 10000.0f, style);
        INFO("style ", int(style), " head_dim ", head_dim, " n ", n);
        CHECK(scaled_diff(read_all(*vk, *xg), read_all(*cpu, *xc)) <= 1e-6);
      }
    }
  }
  check_clean(*vk);
}

TEST_CASE("vulkan: swiglu matches the CPU (4e-6, aliased too); add is exact") {
  auto cpu = make_cpu_backend(2);
  auto vk = make_vk();
  std::mt19937_64 rng(5);
  for (size_t count : {size_t(1), size_t(255), size_t(257), size_t(100000)}) {
    std::vector<float> g = random_floats(rng, count, -20.0f, 20.0f), u = random_floats(rng, count);
    if (count > 2) g[0] = 1e30f, g[1] = -1e30f;
    auto gc = make_buffer(*cpu, g), uc = make_buffer(*cpu, u), oc = cpu->alloc(count);
    auto gg = make_buffer(*vk, g), ug = make_buffer(*vk, u), og = vk->alloc(count);
    cpu->swiglu(*gc, *uc, count, *oc);
    vk->swiglu(*gg, *ug, count, *og);
    const std::vector<float> ref = read_all(*cpu, *oc);
    INFO("count ", count);
    CHECK(worst_rel_or_abs(read_all(*vk, *og), ref) <= 4e-6);
    vk->swiglu(*gg, *ug, count, *gg);  // out aliases gate
    CHECK(read_all(*vk, *gg) == read_all(*vk, *og));
    std::vector<float> sum = read_all(*vk, *og);  // add is exact: compare with the host's sums
    for (size_t i = 0; i < count; ++i) sum[i] += u[i];
    vk->add(*ug, *og, count);
    CHECK(read_all(*vk, *ug) == sum);
  }
  check_clean(*vk);
}

// Widths around the 2048-column slices (a short last slice of 4 columns at 4100), k on both
// sides of the rounds / radix split (4), values with a few ties, and values of 3 levels, whose
// ties at the k-th value overflow the radix selection's gather (its fallback), with infinities.
TEST_CASE("vulkan: top_k equals the host selection, ties to the lower index") {
  auto cpu = make_cpu_backend(1);
  auto vk = make_vk();
  std::mt19937_64 rng(6);
  for (int width : {1, 3, 100, 2048, 2049, 4100, 32000}) {
    for (int k : {1, 2, 5, 40, 64}) {
      if (k > width) continue;
      const int n = 3;
      std::vector<float> l = random_floats(rng, size_t(n * width), -5.0f, 5.0f);
      for (size_t i = 0; i + 7 < l.size(); i += 7) l[i + 3] = l[i];  // plenty of ties
      if (k == 40) {
        for (float& x : l) x = std::round(x / 4.0f);  // -1, 0 (and -0), 1
        for (size_t i = 5; i < l.size(); i += 97) l[i] = i % 2 ? INFINITY : -INFINITY;
      }
      auto lc = make_buffer(*cpu, l), lg = make_buffer(*vk, l);
      std::vector<int32_t> ic(size_t(n * k)), ig(size_t(n * k));
      std::vector<float> vc(size_t(n * k)), vg(size_t(n * k));
      cpu->top_k(*lc, n, width, k, ic.data(), vc.data());
      vk->top_k(*lg, n, width, k, ig.data(), vg.data());
      INFO("width ", width, " k ", k);
      CHECK(ig == ic);
      CHECK(vg == vc);
    }
  }
  auto lg = vk->alloc(10);
  int32_t id;
  float v;
  CHECK_THROWS_WITH_AS(vk->top_k(*lg, 1, 10, 11, &id, &v), doctest::Contains("k = 11"), KernelError);
  check_clean(*vk);
}

}  // namespace sbits::kernels::test

namespace sbits::kernels::test {

TEST_CASE("vulkan: a repeated step is replayed with the new staged values, and equals the CPU") {
  auto cpu = make_cpu_backend(1);
  auto vk = make_vk();
  std::mt19937_64 rng(9);
  TestWeight table = make_weight(WeightType::f16, 40, 16, rng);
  auto tc = cpu->upload(table.host), tg = vk->upload(table.host);
  auto xc = cpu->alloc(2 * 16), xg = vk->alloc(2 * 16);
  const uint64_t replays0 = vulkan_stats(*vk).replays;
  for (int step = 0; step < 6; ++step) {  // a decode loop: same ops, new ids and positions
    const int32_t ids[2] = {int32_t(rng() % 40), int32_t(rng() % 40)};
    const RowInfo rows[2] = {{0, step * 7}, {1, step * 3 + 1}};
    for (Backend* be : {cpu.get(), vk.get()}) {
      Buffer& x = be == cpu.get() ? *xc : *xg;
      be->embed(be == cpu.get() ? *tc : *tg, ids, 2, x);
      be->rope(x, 2, 2, 8, rows, 10000.0f, RopeStyle::neox);
    }
    INFO("step ", step);
    CHECK(scaled_diff(read_all(*vk, *xg), read_all(*cpu, *xc)) <= 1e-6);
  }
  CHECK(vulkan_stats(*vk).replays - replays0 >= 4);
  check_clean(*vk);
}

}  // namespace sbits::kernels::test

namespace sbits::kernels::test {

TEST_CASE("vulkan: buffers carved from shared memory blocks keep their contents through frees and reuse") {
  auto vk = make_vk();
  std::mt19937_64 rng(10);
  std::vector<std::unique_ptr<Buffer>> bufs;
  std::vector<std::vector<float>> want;
  auto add_buffer = [&](size_t n) {
    want.push_back(random_floats(rng, n));
    bufs.push_back(make_buffer(*vk, want.back()));
  };
  for (int i = 0; i < 120; ++i) add_buffer(size_t(1 + rng() % 20000));
  for (size_t i = 0; i < bufs.size(); i += 2) bufs[i].reset();  // holes everywhere
  for (int i = 0; i < 60; ++i) add_buffer(size_t(1 + rng() % 40000));
  add_buffer(size_t(20) << 20);  // 80 MiB: larger than a pooled buffer, its own allocation
  int bad = 0;
  for (size_t i = 0; i < bufs.size(); ++i)
    if (bufs[i]) bad += read_all(*vk, *bufs[i]) != want[i];
  CHECK(bad == 0);
  check_clean(*vk);
}

}  // namespace sbits::kernels::test

namespace sbits::kernels::test {

// Barriers only on hazards (vk_stream.h): three matmuls that read one x and write three
// buffers (a layer's q, k, v) need none between them; an add that reads y2 into y1 needs one
// (read after write); a new write of x (a copy) needs one, since that barrier ordered compute
// work only (vk_stream.cpp: barriers name the stages involved); the matmul that reads the new x
// needs one. Synchronization validation (on in ctest) would report
// a missing one; the results must equal the CPU's.
TEST_CASE("vulkan: barriers are recorded only between ops that touch the same memory") {
  auto cpu = make_cpu_backend(1);
  auto vk = make_vk();
  std::mt19937_64 rng(11);
  std::vector<TestWeight> ws;
  for (int i = 0; i < 3; ++i) ws.push_back(make_weight(WeightType::f32, 48, 40, rng));
  const std::vector<float> x0 = random_floats(rng, 40), x1 = random_floats(rng, 40);
  std::vector<std::vector<float>> got, want;
  for (Backend* be : {cpu.get(), vk.get()}) {
    std::vector<std::unique_ptr<Weight>> w;
    for (const TestWeight& t : ws) w.push_back(be->upload(t.host));
    auto x = make_buffer(*be, x0), y1 = be->alloc(48), y2 = be->alloc(48), y3 = be->alloc(48);
    be->synchronize();
    const uint64_t b0 = be == vk.get() ? vulkan_stats(*vk).barriers : 0;
    be->matmul(*w[0], *x, 1, *y1, false);
    be->matmul(*w[1], *x, 1, *y2, false);
    be->matmul(*w[2], *x, 1, *y3, false);  // independent of the two before: no barrier
    be->add(*y1, *y2, 48);                 // reads y2: one
    be->write(*x, x1.data(), 40);          // a copy; the add's barrier ordered compute only: one
    be->matmul(*w[2], *x, 1, *y2, true);   // reads the new x: one
    be->synchronize();                     // one submission (barriers are counted as recorded)
    if (be == vk.get()) CHECK(vulkan_stats(*vk).barriers == b0 + 3);  // a barrier per op: 5
    std::vector<float> all = read_all(*be, *y1), b2 = read_all(*be, *y2), b3 = read_all(*be, *y3);
    all.insert(all.end(), b2.begin(), b2.end());
    all.insert(all.end(), b3.begin(), b3.end());
    (be == cpu.get() ? want : got).push_back(all);
  }
  CHECK(scaled_diff(got[0], want[0]) <= 1e-5);
  check_clean(*vk);
}

}  // namespace sbits::kernels::test
