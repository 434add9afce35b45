// Greedy decoding on two backends compared token by token: the reference (the CPU) and another
// (CUDA, Vulkan). The other backend sums in another order (and may round x to f16), so the two
// may pick different tokens where the reference's two best logits are nearly equal. A
// difference passes only at such a near tie: the gap between the two candidates, measured on
// the reference's logits, is at most `near_tie`; the parting is printed with both backends'
// logits of both candidates, so that a reader can see how near the tie was.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

namespace sbits::test {

// The index of the largest value; ties keep the lower index (the CPU sampler's rule).
inline int32_t argmax(std::span<const float> v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;
  return int32_t(best);
}

// One greedy step on both backends.
struct GreedyStep {
  int32_t ref_id = 0, other_id = 0;
  double gap = 0;  // |ref[ref_id] - ref[other_id]|: 0 when the tokens agree
  bool same() const { return ref_id == other_id; }
};

// Compares the greedy choice of two backends' logits for the same position; when they differ,
// prints `label` with both candidates' logits on both backends and the gap.
inline GreedyStep compare_greedy(std::span<const float> ref, std::span<const float> other, const std::string& label,
                                 const char* other_name) {
  GreedyStep s;
  s.ref_id = argmax(ref);
  s.other_id = argmax(other);
  if (s.same()) return s;
  const size_t a = size_t(s.ref_id), b = size_t(s.other_id);
  s.gap = std::fabs(double(ref[a]) - double(ref[b]));
  std::printf("%s: parts: cpu picks %d (cpu %.5f, %s %.5f), %s picks %d (cpu %.5f, %s %.5f); cpu gap %.5f\n",
              label.c_str(), s.ref_id, ref[a], other_name, other[a], other_name, s.other_id, ref[b], other_name,
              other[b], s.gap);
  std::fflush(stdout);
  return s;
}

}  // namespace sbits::test
