// Exhaustive tests of the 16-bit float codecs the CPU kernels use, on every ISA: all 65536 f16
// and bf16 codes decoded against a reference decoder, f32 -> f16 on every f16 value, every
// midpoint between neighbours (ties to even) and random bit patterns.
#include <doctest/doctest.h>

#include <cstring>

#include "kernels/cpu/half.h"
#include "tests/kernels/cpu_test_util.h"

namespace sbits::kernels::test {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::vector<uint16_t> all_codes() {
  std::vector<uint16_t> c(65536);
  for (uint32_t i = 0; i < 65536; ++i) c[i] = uint16_t(i);
  return c;
}

// Decodes every code through the kernels' conversion (at a misaligned address, to exercise
// unaligned vector loads) and compares with the reference. NaN codes must decode to NaN with
// the payload kept (as vcvtph2ps does: quiet bit set, payload shifted to the top).
void check_decode_all(WeightType type, CpuIsa isa) {
  const std::vector<uint16_t> codes = all_codes();
  std::vector<uint8_t> bytes(codes.size() * 2 + 1);
  std::memcpy(bytes.data() + 1, codes.data(), codes.size() * 2);
  std::vector<float> out(codes.size());
  cpu_convert_to_f32(type, bytes.data() + 1, out.data(), codes.size(), isa);
  int bad = 0;
  for (uint32_t c = 0; c < 65536; ++c) {
    const double ref = type == WeightType::f16 ? ref_f16_to_double(uint16_t(c)) : ref_bf16_to_double(uint16_t(c));
    bool ok;
    if (std::isnan(ref)) {
      const int mant_bits = type == WeightType::f16 ? 10 : 7;
      const uint32_t payload = (c & ((1u << mant_bits) - 1)) << (23 - mant_bits);
      const uint32_t quiet = type == WeightType::f16 ? 0x400000u : 0u;  // bf16 is a plain shift
      ok = bits(out[c]) == (((c & 0x8000u) << 16) | 0x7f800000u | quiet | payload);
    } else {
      ok = double(out[c]) == ref && std::signbit(out[c]) == std::signbit(ref);
    }
    if (!ok && ++bad <= 5) FAIL_CHECK("code 0x" << std::hex << c << ": got bits 0x" << bits(out[c]));
  }
  CHECK(bad == 0);
}

TEST_CASE("cpu codecs: every f16 and bf16 code decodes exactly, on every ISA") {
  for (CpuIsa isa : test_isas()) {
    for (WeightType type : {WeightType::f16, WeightType::bf16}) {
      CAPTURE(cpu_isa_name(isa));
      CAPTURE(weight_type_name(type));
      check_decode_all(type, isa);
    }
  }
}

TEST_CASE("cpu codecs: the scalar helpers agree with the reference decoders") {
  for (uint32_t c = 0; c < 65536; ++c) {
    const double f16 = ref_f16_to_double(uint16_t(c)), bf16 = ref_bf16_to_double(uint16_t(c));
    if (!std::isnan(f16)) REQUIRE(double(cpu::f16_to_f32(uint16_t(c))) == f16);
    if (!std::isnan(bf16)) REQUIRE(double(cpu::bf16_to_f32(uint16_t(c))) == bf16);
  }
}

std::vector<uint16_t> encode(const std::vector<float>& in, CpuIsa isa) {
  std::vector<uint16_t> out(in.size());
  cpu_convert_f32_to_f16(in.data(), out.data(), in.size(), isa);
  return out;
}

TEST_CASE("cpu codecs: f32 -> f16 round-trips every f16 value and rounds midpoints to even") {
  std::vector<float> values, midpoints, beside;
  std::vector<uint16_t> want_values, want_mid;
  for (uint32_t c = 0; c < 65536; ++c) {
    if ((c & 0x7c00) == 0x7c00 && (c & 0x3ff)) continue;  // NaN: tested below
    values.push_back(float(ref_f16_to_double(uint16_t(c))));
    want_values.push_back(uint16_t(c));
    // The midpoint to the next code up in magnitude (exact in f32: 12 significant bits).
    if ((c & 0x7fff) < 0x7bff) {
      const double a = ref_f16_to_double(uint16_t(c)), b = ref_f16_to_double(uint16_t(c + 1));
      const float mid = float((a + b) / 2);
      midpoints.push_back(mid);
      want_mid.push_back(uint16_t((c & 1) ? c + 1 : c));  // ties go to the even code
      beside.push_back(std::nextafter(mid, 0.0f));        // just below the tie: the smaller code
      beside.push_back(std::nextafter(mid, float(b) * 2));  // just above: the larger one
    }
  }
  for (CpuIsa isa : test_isas()) {
    CAPTURE(cpu_isa_name(isa));
    CHECK(encode(values, isa) == want_values);
    CHECK(encode(midpoints, isa) == want_mid);
    const std::vector<uint16_t> got = encode(beside, isa);
    for (size_t i = 0; i < beside.size(); ++i) REQUIRE(got[i] == ref_f32_to_f16(beside[i]));
  }
}

TEST_CASE("cpu codecs: f32 -> f16 on random bit patterns matches the reference, NaN stays NaN") {
  std::mt19937_64 rng(1234);
  std::vector<float> in(1 << 20);
  for (auto& f : in) f = from_bits(uint32_t(rng()));
  // Plus the edges: overflow threshold, largest finite, smallest subnormal and below.
  for (uint32_t b : {0x477fe000u, 0x477fefffu, 0x477ff000u, 0x33000000u, 0x33000001u, 0x387fe000u, 0x387fffffu})
    in.push_back(from_bits(b)), in.push_back(-from_bits(b));
  std::vector<std::vector<uint16_t>> per_isa;
  for (CpuIsa isa : test_isas()) {
    CAPTURE(cpu_isa_name(isa));
    const std::vector<uint16_t> got = encode(in, isa);
    for (size_t i = 0; i < in.size(); ++i) {
      if (std::isnan(in[i])) {
        REQUIRE((got[i] & 0x7e00) == 0x7e00);  // a quiet NaN
        REQUIRE((got[i] & 0x8000) == ((bits(in[i]) >> 16) & 0x8000));
      } else {
        REQUIRE(got[i] == ref_f32_to_f16(in[i]));
      }
    }
    per_isa.push_back(got);
  }
  // NaN payloads included, the scalar conversion is bit-identical to the hardware one.
  for (size_t k = 1; k < per_isa.size(); ++k) CHECK(per_isa[k] == per_isa[0]);
}

TEST_CASE("cpu codecs: embed decodes every code of a 256 x 256 table exactly") {
  const std::vector<uint16_t> codes = all_codes();
  std::vector<int32_t> ids(256);
  for (int i = 0; i < 256; ++i) ids[size_t(i)] = 255 - i;  // every row, in reverse order
  for (CpuIsa isa : test_isas()) {
    for (WeightType type : {WeightType::f16, WeightType::bf16}) {
      CAPTURE(cpu_isa_name(isa));
      CAPTURE(weight_type_name(type));
      auto be = make_backend(isa, 2);
      auto w = be->upload(HostWeight{type, 256, 256, codes.data(), codes.size() * 2});
      auto out = be->alloc(codes.size());
      be->embed(*w, ids.data(), 256, *out);
      const std::vector<float> got = read_all(*be, *out);
      int bad = 0;
      for (int r = 0; r < 256; ++r) {
        for (int c = 0; c < 256; ++c) {
          const uint16_t code = codes[size_t(ids[size_t(r)] * 256 + c)];
          const double ref = type == WeightType::f16 ? ref_f16_to_double(code) : ref_bf16_to_double(code);
          const float g = got[size_t(r * 256 + c)];
          if (std::isnan(ref) ? !std::isnan(g) : double(g) != ref) ++bad;
        }
      }
      CHECK(bad == 0);
    }
  }
}

}  // namespace
}  // namespace sbits::kernels::test
