// Exhaustive codec tests (kernels/quant/codec_b*.h): every code value of every bitwidth at every
// position of a pack unit, against a reference written from the spec's formula
// (SBITS.md "Layout 16": code i of a word at bit P * (i/2 + (i%2) * n/2)), not from the codec.
#include <doctest/doctest.h>

#include <bit>
#include <cstring>
#include <random>

#include "kernels/quant/codec.h"
#include "kernels/quant/tiled.h"

namespace sbits::kernels::quant {
namespace {

// Reference: the bit that holds bit `k` of code `i` in plane P of a unit, as (word, bit).
void ref_position(int p, int i, int k, int& word, int& bit) {
  const int n = 32 / p;
  word = i / n;
  const int j = i % n;
  bit = p * (j / 2 + (j % 2) * (n / 2)) + k;
}

template <class C>
void check_codec() {
  constexpr int B = C::kBits, P0 = C::kPlane0, P1 = C::kPlane1;
  INFO("bits ", B);
  static_assert(P0 + P1 == B);
  CHECK(plane0_bits(B) == P0);
  CHECK(plane1_bits(B) == P1);
  std::mt19937 rng(B);
  for (int pos = 0; pos < kUnitCodes; ++pos) {
    for (uint32_t v = 0; v <= C::kMaxCode; ++v) {
      // The code under test at `pos`, random codes elsewhere.
      uint8_t q[kUnitCodes];
      for (auto& x : q) x = uint8_t(rng() & C::kMaxCode);
      q[pos] = uint8_t(v);
      uint32_t w0[8], w1[8];
      std::memset(w1, 0xAB, sizeof w1);
      C::pack(q, w0, w1);
      // Every bit of every code where the spec puts it, and nothing else set.
      uint32_t want0[8] = {}, want1[8] = {};
      for (int i = 0; i < kUnitCodes; ++i) {
        for (int k = 0; k < B; ++k) {
          if (!((q[i] >> k) & 1)) continue;
          int word, bit;
          if (k < P0) {
            ref_position(P0, i, k, word, bit);
            want0[word] |= 1u << bit;
          } else {
            ref_position(P1, i, k - P0, word, bit);
            want1[word] |= 1u << bit;
          }
        }
      }
      REQUIRE(std::memcmp(w0, want0, P0 * 4) == 0);
      if (P1) REQUIRE(std::memcmp(w1, want1, P1 * 4) == 0);
      REQUIRE(C::get(w0, w1, pos) == v);
      uint8_t back[kUnitCodes];
      C::unpack(w0, w1, back);
      REQUIRE(std::memcmp(back, q, kUnitCodes) == 0);
      const uint32_t pair = C::pair(w0, w1, pos / 2);
      REQUIRE((pos % 2 ? pair >> 16 : pair & 0xffffu) == v);
    }
  }
  // All codes at their maximum fill every bit of the unit's B words: no bit is wasted.
  uint8_t ones[kUnitCodes];
  std::memset(ones, int(C::kMaxCode), sizeof ones);
  uint32_t w0[8], w1[8];
  C::pack(ones, w0, w1);
  int popcount = 0;
  for (int k = 0; k < P0; ++k) popcount += std::popcount(w0[k]);
  for (int k = 0; k < P1; ++k) popcount += std::popcount(w1[k]);
  CHECK(popcount == 32 * B);
}

}  // namespace

TEST_CASE("codecs: every code at every position, against the spec's bit positions") {
  check_codec<Codec<2>>();
  check_codec<Codec<3>>();
  check_codec<Codec<4>>();
  check_codec<Codec<5>>();
  check_codec<Codec<6>>();
  check_codec<Codec<8>>();
}

TEST_CASE("codecs: the dispatch point reaches each codec and refuses other bitwidths") {
  for (int b = 0; b <= 17; ++b) {
    int got = -1;
    const bool ok = dispatch_codec(b, [&](auto c) { got = decltype(c)::kBits; });
    CHECK(ok == is_codec_bits(b));
    if (ok) CHECK(got == b);
    CHECK(is_tile_bits(b) == (is_codec_bits(b) || b == 16));
  }
}

TEST_CASE("half_to_float is exact for every f16 code") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = half_to_float(uint16_t(h));
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 0x1f) {
      REQUIRE((m ? std::isnan(f) : std::isinf(f)));
      continue;
    }
    const double want = e == 0 ? sign * std::ldexp(double(m), -24) : sign * std::ldexp(double(1024 + m), e - 25);
    REQUIRE(double(f) == want);
    REQUIRE(std::signbit(f) == bool(h & 0x8000));
  }
}

TEST_CASE("tile geometry: region sizes and 16-byte alignment for every bitwidth and edge shape") {
  for (int bits : kTileBitwidths) {
    for (int rows : {1, 7, 64}) {
      for (int cols : {1, 31, 32, 44, 100, 128}) {
        INFO("bits ", bits, " rows ", rows, " cols ", cols);
        const uint64_t size = tile_bytes(rows, cols, 32, bits);
        CHECK(size % 16 == 0);
        const int64_t units = units_for_cols(cols);
        if (bits == 16) {
          CHECK(size == uint64_t(rows * units * 64));
        } else {
          CHECK(size >= uint64_t(rows * units * 4 * bits + rows * groups_for_units(units, 32) * 4));
          CHECK(size < uint64_t(rows * units * 4 * bits + rows * groups_for_units(units, 32) * 4 + 48));
        }
      }
    }
  }
}

}  // namespace sbits::kernels::quant
