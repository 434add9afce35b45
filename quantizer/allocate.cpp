#include "quantizer/allocate.h"

#include <cmath>
#include <queue>

namespace sbits::quantizer {
namespace {

// The allowed choices of a unit on the lower convex hull of (bytes, err), cheapest first:
// dominated choices (more bytes, no less error) and ones under the hull are dropped, so that
// the gain per byte of successive upgrades decreases — the condition for greedy and for the
// Lagrangian to agree.
std::vector<uint8_t> hull(const AllocUnit& u) {
  std::vector<uint8_t> h;
  auto efficiency = [&](uint8_t a, uint8_t b) {
    return (u.err[a] - u.err[b]) / double(u.bytes[b] - u.bytes[a]);
  };
  for (int k = u.lo; k <= u.hi; ++k) {
    const auto c = uint8_t(k);
    if (!h.empty() && (u.bytes[c] <= u.bytes[h.back()] || u.err[c] >= u.err[h.back()])) continue;
    while (h.size() >= 2 && efficiency(h[h.size() - 2], c) >= efficiency(h[h.size() - 2], h.back())) h.pop_back();
    h.push_back(c);
  }
  return h;
}

Allocation cheapest(const std::vector<AllocUnit>& units, uint64_t budget) {
  Allocation a;
  a.choice.resize(units.size());
  for (size_t i = 0; i < units.size(); ++i) {
    a.choice[i] = units[i].lo;
    a.bytes += units[i].bytes[units[i].lo];
    a.predicted += units[i].err[units[i].lo];
  }
  if (a.bytes > budget) {
    throw QuantizerError("the budget allows " + std::to_string(budget) + " bytes of quantized tensors, but the "
                         "cheapest allowed bitwidths already need " + std::to_string(a.bytes) +
                         " (raise --bpw/--size or relax --keep)");
  }
  return a;
}

Allocation greedy(const std::vector<AllocUnit>& units, uint64_t budget) {
  Allocation a = cheapest(units, budget);
  std::vector<std::vector<uint8_t>> hulls(units.size());
  std::vector<uint8_t> pos(units.size(), 0);
  struct Step {
    double gain;  // err removed per byte
    size_t unit;
    bool operator<(const Step& o) const { return gain < o.gain || (gain == o.gain && unit > o.unit); }
  };
  std::priority_queue<Step> heap;
  auto push_next = [&](size_t i) {
    const auto& h = hulls[i];
    if (size_t(pos[i]) + 1 >= h.size()) return;
    const uint8_t from = h[pos[i]], to = h[size_t(pos[i]) + 1];
    heap.push({(units[i].err[from] - units[i].err[to]) / double(units[i].bytes[to] - units[i].bytes[from]), i});
  };
  for (size_t i = 0; i < units.size(); ++i) {
    hulls[i] = hull(units[i]);
    push_next(i);
  }
  while (!heap.empty()) {
    const Step s = heap.top();
    heap.pop();
    const AllocUnit& u = units[s.unit];
    const uint8_t from = hulls[s.unit][pos[s.unit]], to = hulls[s.unit][size_t(pos[s.unit]) + 1];
    const uint64_t extra = u.bytes[to] - u.bytes[from];
    if (a.bytes + extra > budget) continue;  // this unit's next step no longer fits: it stays
    a.bytes += extra;
    a.predicted += u.err[to] - u.err[from];
    a.choice[s.unit] = to;
    ++pos[s.unit];
    push_next(s.unit);
  }
  return a;
}

// Each unit's best hull point at price lambda; returns the total bytes.
uint64_t choose_at(const std::vector<AllocUnit>& units, const std::vector<std::vector<uint8_t>>& hulls,
                   double lambda, std::vector<uint8_t>& choice) {
  uint64_t bytes = 0;
  for (size_t i = 0; i < units.size(); ++i) {
    uint8_t best = hulls[i][0];
    double best_cost = units[i].err[best] + lambda * double(units[i].bytes[best]);
    for (uint8_t c : hulls[i]) {
      const double cost = units[i].err[c] + lambda * double(units[i].bytes[c]);
      if (cost < best_cost) best = c, best_cost = cost;
    }
    choice[i] = best;
    bytes += units[i].bytes[best];
  }
  return bytes;
}

Allocation lagrange(const std::vector<AllocUnit>& units, uint64_t budget) {
  Allocation a = cheapest(units, budget);
  std::vector<std::vector<uint8_t>> hulls(units.size());
  for (size_t i = 0; i < units.size(); ++i) hulls[i] = hull(units[i]);
  // Bisection in log(lambda): price per byte from far below to far above any unit's gain.
  double lo = -60.0, hi = 60.0;  // ln(lambda); lambda = e^hi makes every unit take its cheapest
  std::vector<uint8_t> choice(units.size());
  for (int it = 0; it < 100; ++it) {
    const double mid = 0.5 * (lo + hi);
    (choose_at(units, hulls, std::exp(mid), choice) <= budget ? hi : lo) = mid;
  }
  a.bytes = choose_at(units, hulls, std::exp(hi), a.choice);
  a.predicted = 0.0;
  for (size_t i = 0; i < units.size(); ++i) a.predicted += units[i].err[a.choice[i]];
  return a;
}

}  // namespace

Allocation allocate(const std::vector<AllocUnit>& units, uint64_t budget_bytes, AllocMethod method) {
  for (const AllocUnit& u : units) {
    if (u.lo > u.hi || u.hi >= kTileChoices) throw QuantizerError("allocate: a unit has no allowed bitwidth");
    for (int k = u.lo + 1; k <= u.hi; ++k)
      if (u.bytes[size_t(k)] < u.bytes[size_t(k) - 1]) throw QuantizerError("allocate: bytes must grow with bits");
  }
  return method == AllocMethod::greedy ? greedy(units, budget_bytes) : lagrange(units, budget_bytes);
}

}  // namespace sbits::quantizer
