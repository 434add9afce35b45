// Allocation: the byte budget is never exceeded, pins hold, dominated bitwidths are never
// chosen, more budget never predicts more loss, and the Lagrangian (the scalable form) lands
// within 1% of exact greedy on a model-sized problem and exactly on it at hull budgets.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "quantizer/allocate.h"

namespace sbits::quantizer {
namespace {

// A tile-like unit: error falls roughly 4x per extra bit (as for uniform quantization), scaled
// by a log-normal sensitivity; bytes as for a 64x128 tile with 512 bytes of scales.
AllocUnit tile_unit(std::mt19937& rng) {
  std::lognormal_distribution<double> sens(0.0, 2.0);
  std::uniform_real_distribution<double> jitter(0.8, 1.25);
  AllocUnit u;
  const double s = sens(rng);
  for (int k = 0; k < kTileChoices; ++k) {
    const int b = kTileBits[size_t(k)];
    u.bytes[size_t(k)] = uint64_t(64 * 128 * b / 8 + (b == 16 ? 0 : 512));
    u.err[size_t(k)] = b == 16 ? 0.0 : s * std::pow(4.0, -b) * jitter(rng);
  }
  return u;
}

std::vector<AllocUnit> tile_units(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<AllocUnit> u;
  for (size_t i = 0; i < n; ++i) u.push_back(tile_unit(rng));
  return u;
}

uint64_t cheapest_bytes(const std::vector<AllocUnit>& u) {
  uint64_t b = 0;
  for (const AllocUnit& x : u) b += x.bytes[x.lo];
  return b;
}

void check_consistent(const std::vector<AllocUnit>& u, const Allocation& a, uint64_t budget) {
  uint64_t bytes = 0;
  double err = 0;
  REQUIRE(a.choice.size() == u.size());
  for (size_t i = 0; i < u.size(); ++i) {
    CHECK(a.choice[i] >= u[i].lo);
    CHECK(a.choice[i] <= u[i].hi);
    bytes += u[i].bytes[a.choice[i]];
    err += u[i].err[a.choice[i]];
  }
  CHECK(bytes == a.bytes);
  CHECK(bytes <= budget);
  CHECK(err == doctest::Approx(a.predicted).epsilon(1e-9));
}

}  // namespace

TEST_CASE("allocate: budget, consistency and monotonicity for both allocators") {
  const auto units = tile_units(500, 1);
  const uint64_t lo = cheapest_bytes(units);
  double last_greedy = INFINITY;
  for (double extra : {0.0, 0.1, 0.3, 0.7, 1.5, 4.0}) {
    const auto budget = uint64_t(double(lo) * (1.0 + extra));
    for (AllocMethod m : {AllocMethod::greedy, AllocMethod::lagrange}) {
      const Allocation a = allocate(units, budget, m);
      check_consistent(units, a, budget);
      if (m == AllocMethod::greedy) {
        CHECK(a.predicted <= last_greedy);
        last_greedy = a.predicted;
      }
    }
  }
  CHECK_THROWS_WITH_AS(allocate(units, lo - 1, AllocMethod::greedy), doctest::Contains("cheapest allowed bitwidths"),
                       QuantizerError);
}

TEST_CASE("allocate: the Lagrangian is within 1% of exact greedy, and equal at hull budgets") {
  const auto units = tile_units(7000, 2);  // about tech-llama-58m's tile count
  const uint64_t lo = cheapest_bytes(units);
  for (double extra : {0.15, 0.4, 0.8}) {
    const auto budget = uint64_t(double(lo) * (1.0 + extra));
    const Allocation g = allocate(units, budget, AllocMethod::greedy);
    const Allocation l = allocate(units, budget, AllocMethod::lagrange);
    MESSAGE("budget +", extra * 100, "%: greedy ", g.predicted, ", lagrange ", l.predicted);
    CHECK(l.predicted <= g.predicted * 1.01);
    // The Lagrangian's own byte total is a budget at which greedy must find the same loss.
    const Allocation g2 = allocate(units, l.bytes, AllocMethod::greedy);
    CHECK(g2.predicted == doctest::Approx(l.predicted).epsilon(1e-9));
  }
}

TEST_CASE("allocate: pins hold and dominated choices are skipped") {
  auto units = tile_units(50, 3);
  units[0].lo = units[0].hi = 5;  // pinned to 8 bits
  units[1].lo = units[1].hi = 0;  // pinned to 2 bits
  // Unit 2's 3-bit choice is no better than its 2-bit one: it must never be chosen.
  units[2].err[1] = units[2].err[0] * 1.5;
  for (double extra : {0.2, 0.5, 1.0, 3.0}) {
    const auto budget = uint64_t(double(cheapest_bytes(units)) * (1.0 + extra));
    for (AllocMethod m : {AllocMethod::greedy, AllocMethod::lagrange}) {
      const Allocation a = allocate(units, budget, m);
      check_consistent(units, a, budget);
      CHECK(a.choice[0] == 5);
      CHECK(a.choice[1] == 0);
      CHECK(a.choice[2] != 1);
    }
  }
  const Allocation all = allocate(units, UINT64_MAX / 2, AllocMethod::greedy);
  for (size_t i = 3; i < units.size(); ++i) CHECK(all.choice[i] == kTileChoices - 1);  // unlimited: lossless
}

}  // namespace sbits::quantizer
