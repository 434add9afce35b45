// Arguments that could read or write out of bounds throw KernelError (naming the op and the
// values), and a rejected call writes nothing.
#include <doctest/doctest.h>

#include <string>

#include "tests/kernels/cpu_test_util.h"

namespace sbits::kernels::test {
namespace {

// Runs f, which must throw KernelError whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<const char*> parts) {
  try {
    f();
    FAIL_CHECK("no KernelError thrown, expected one mentioning " << *parts.begin());
  } catch (const KernelError& e) {
    const std::string msg = e.what();
    for (const char* p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, msg, " lacks '", p, "'");
  }
}

class OtherBuffer final : public Buffer {};

TEST_CASE("cpu validation: memory ops") {
  auto be = make_cpu_backend(1);
  std::vector<uint16_t> bytes(12 * 4);
  expect_error([&] { be->upload(HostWeight{WeightType::bf16, 12, 4, bytes.data(), 95}); }, {"upload", "96", "95"});
  expect_error([&] { be->upload(HostWeight{WeightType::f16, 0, 4, bytes.data(), 96}); }, {"upload", "positive"});
  expect_error([&] { be->upload(HostWeight{WeightType(7), 12, 4, bytes.data(), 96}); }, {"upload", "7"});
  expect_error([&] { be->upload(HostWeight{WeightType::f32, 12, 4, nullptr, 192}); }, {"upload", "null"});
  expect_error([&] { be->upload(HostWeight{WeightType::f32, int64_t(1) << 62, 8, bytes.data(), 96}); },
               {"upload", "overflow"});
  auto b = be->alloc(10);
  float x[11] = {};
  expect_error([&] { be->write(*b, x, 11); }, {"write", "11", "10"});
  expect_error([&] { be->write(*b, x, 2, 9); }, {"write", "9"});
  expect_error([&] { be->read(*b, x, 1, 10); }, {"read", "10"});
  OtherBuffer other;
  other.count = 100;
  expect_error([&] { be->write(other, x, 1); }, {"write", "not a CPU backend buffer"});
  expect_error([&] { be->create_kv_cache(KvCacheDesc{1, 0, 8, 1, 4, KvType::f16}); }, {"create_kv_cache", "n_slots=0"});
}

TEST_CASE("cpu validation: matmul, embed, get_rows, rmsnorm, rope, swiglu, add") {
  auto be = make_cpu_backend(2);
  std::mt19937_64 rng(1);
  const TestWeight w = make_weight(WeightType::f16, 6, 5, rng);
  auto wd = be->upload(w.host);
  auto x = be->alloc(10), y = be->alloc(12), small = be->alloc(11);
  expect_error([&] { be->matmul(*wd, *x, 3, *y, false); }, {"matmul", "x", "10", "15"});
  expect_error([&] { be->matmul(*wd, *x, 2, *small, false); }, {"matmul", "y", "11", "12"});
  expect_error([&] { be->matmul(*wd, *x, -1, *y, false); }, {"matmul", "-1"});
  auto sq = be->alloc(30);
  expect_error([&] { be->matmul(*wd, *sq, 1, *sq, false); }, {"matmul", "same buffer"});

  const int32_t ids[] = {0, 6};
  expect_error([&] { be->embed(*wd, ids, 2, *y); }, {"embed", "ids[1] = 6", "[0, 6)"});
  const int32_t neg[] = {-1};
  expect_error([&] { be->embed(*wd, neg, 1, *y); }, {"embed", "-1"});
  expect_error([&] { be->embed(*wd, ids, 1, *be->alloc(4)); }, {"embed", "out", "4", "5"});
  expect_error([&] { be->embed(*wd, nullptr, 1, *y); }, {"embed", "null"});

  const int32_t rows_ok[] = {1}, rows_bad[] = {4};
  expect_error([&] { be->get_rows(*y, rows_bad, 1, 3, *x); }, {"get_rows", "src_rows[0] = 4", "[0, 4)"});
  expect_error([&] { be->get_rows(*y, rows_ok, 1, 0, *x); }, {"get_rows", "width"});
  expect_error([&] { be->get_rows(*y, rows_ok, 1, 3, *y); }, {"get_rows", "same buffer"});

  expect_error([&] { be->rmsnorm(*x, *wd, 1e-5f, 1, *x); }, {"rmsnorm", "1 row", "6 x 5"});
  const TestWeight nw = make_weight(WeightType::bf16, 1, 5, rng);
  auto nwd = be->upload(nw.host);
  expect_error([&] { be->rmsnorm(*x, *nwd, 1e-5f, 3, *y); }, {"rmsnorm", "x", "10", "15"});
  expect_error([&] { be->rmsnorm(*x, *nwd, -1.0f, 1, *y); }, {"rmsnorm", "eps"});

  RowInfo ri[2] = {{0, 1}, {0, -3}};
  expect_error([&] { be->rope(*y, 2, 2, 3, ri, 1e4f, RopeStyle::neox); }, {"rope", "even", "3"});
  expect_error([&] { be->rope(*y, 2, 2, 4, ri, 1e4f, RopeStyle::neox); }, {"rope", "x", "12", "16"});
  expect_error([&] { be->rope(*y, 2, 1, 4, ri, 1e4f, RopeStyle::neox); }, {"rope", "rows[1].pos = -3"});
  expect_error([&] { be->rope(*y, 1, 1, 4, ri, 0.0f, RopeStyle::neox); }, {"rope", "theta"});

  expect_error([&] { be->swiglu(*x, *y, 11, *y); }, {"swiglu", "gate", "10", "11"});
  expect_error([&] { be->add(*y, *x, 11); }, {"add", "y", "10", "11"});
}

TEST_CASE("cpu validation: kv_store and attention reject bad slots, positions, layers, shapes") {
  for (KvType type : {KvType::f16, KvType::f32}) {
    auto be = make_cpu_backend(2);
    const KvCacheDesc d{2, 2, 8, 2, 4, type};
    auto cache = be->create_kv_cache(d);
    CHECK(cache->bytes() == size_t(2 * 2 * 2 * 8 * 2 * 4) * (type == KvType::f16 ? 2 : 4));
    std::mt19937_64 rng(2);
    auto k = make_buffer(*be, random_floats(rng, 16)), v = make_buffer(*be, random_floats(rng, 16));
    const RowInfo good[2] = {{0, 0}, {1, 7}};
    be->kv_store(*cache, 0, *k, *v, 2, good);
    const RowInfo bad_slot[2] = {{0, 1}, {2, 0}}, bad_pos[2] = {{0, 1}, {1, 8}}, neg_pos[1] = {{0, -1}};
    expect_error([&] { be->kv_store(*cache, 0, *k, *v, 2, bad_slot); }, {"kv_store", "rows[1].slot = 2", "[0, 2)"});
    expect_error([&] { be->kv_store(*cache, 0, *k, *v, 2, bad_pos); }, {"kv_store", "rows[1].pos = 8", "[0, 8)"});
    expect_error([&] { be->kv_store(*cache, 0, *k, *v, 1, neg_pos); }, {"kv_store", "-1"});
    expect_error([&] { be->kv_store(*cache, 2, *k, *v, 2, good); }, {"kv_store", "layer 2", "[0, 2)"});
    const RowInfo good3[3] = {{0, 0}, {1, 7}, {1, 6}};
    expect_error([&] { be->kv_store(*cache, 0, *k, *v, 3, good3); }, {"kv_store", "k", "16", "24"});

    // The rejected stores wrote nothing: their valid first row (slot 0, pos 1) was not stored, so
    // attending at slot 0 pos 1 still fails.
    const AttentionShape shape{4, 2, 4};
    auto q = make_buffer(*be, random_floats(rng, 16));
    auto out1 = be->alloc(16), out2 = be->alloc(16);
    const RowInfo r0[1] = {{0, 0}};
    be->attention(*q, *cache, 0, 1, r0, shape, *out1);
    const RowInfo r01[1] = {{0, 1}};
    expect_error([&] { be->attention(*q, *cache, 0, 1, r01, shape, *out2); }, {"attention", "not stored", "< 1"});
    expect_error([&] { be->attention(*q, *cache, 1, 1, r0, shape, *out2); }, {"attention", "not stored", "< 0"});
    expect_error([&] { be->attention(*q, *cache, 0, 2, bad_slot, shape, *out2); }, {"attention", "slot = 2"});
    expect_error([&] { be->attention(*q, *cache, 0, 1, r0, AttentionShape{4, 1, 4}, *out2); }, {"attention", "n_kv_heads=1"});
    expect_error([&] { be->attention(*q, *cache, 0, 1, r0, AttentionShape{3, 2, 4}, *out2); }, {"attention", "n_heads=3"});
    expect_error([&] { be->attention(*q, *cache, 0, 2, good, shape, *out2); }, {"attention", "q", "16", "32"});
    be->attention(*q, *cache, 0, 1, r0, shape, *out2);
    CHECK(read_all(*be, *out1) == read_all(*be, *out2));
  }
}

}  // namespace
}  // namespace sbits::kernels::test
