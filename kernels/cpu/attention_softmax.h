// Attention for one (row, head) with a blocked online softmax, shared by every ISA.
//
// Positions are taken in blocks of kAttentionBlock: the block's scores go to a small stack
// array, the running maximum m is raised once per block (rescaling the running sum l and the
// output accumulator by exp(m_old - m_new)), then the block's exp(s - m) weight the values.
// So the memory is O(block + head_dim) at any context length, every exp argument is <= 0 (no
// overflow), and the result equals softmax(s) V up to f32 rounding.
//
// An ISA supplies block-level pieces (one call per block, so an ISA's target attributes stay
// on its own functions and calls cost nothing measurable):
//   A::scores(q, k, p0, nb, hd, scale, s)      s[j] = scale * dot(q, K[p0 + j])
//   A::exp_shifted(s, nb, m)                   s[j] = exp(s[j] - m)
//   A::scale(acc, hd, c)                       acc *= c
//   A::accumulate(acc, p, v, p0, nb, hd)       acc += sum_j p[j] * V[p0 + j]
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_kernels.h"

namespace sbits::kernels::cpu {

constexpr int kAttentionBlock = 64;

template <class A>
void attention_head_online(const AttentionHead& h) {
  const int hd = h.head_dim;
  float* q = h.scratch;  // a copy, because out may alias q
  float* acc = h.scratch + hd;
  std::copy(h.q, h.q + hd, q);
  std::fill(acc, acc + hd, 0.0f);
  float m = -std::numeric_limits<float>::infinity();
  float l = 0.0f;
  float s[kAttentionBlock];
  for (int64_t p0 = 0; p0 < h.n_pos; p0 += kAttentionBlock) {
    const int nb = int(std::min<int64_t>(kAttentionBlock, h.n_pos - p0));
    A::scores(q, h.k, p0, nb, hd, h.scale, s);
    const float block_max = *std::max_element(s, s + nb);
    if (block_max > m) {
      const float c = std::exp(m - block_max);  // 0 on the first block
      l *= c;
      A::scale(acc, hd, c);
      m = block_max;
    }
    A::exp_shifted(s, nb, m);
    for (int j = 0; j < nb; ++j) l += s[j];
    A::accumulate(acc, s, h.v, p0, nb, hd);
  }
  const float inv = 1.0f / l;
  for (int d = 0; d < hd; ++d) h.out[d] = acc[d] * inv;
}

}  // namespace sbits::kernels::cpu
