// top_k on the device: one block per row of logits; only k (id, value) pairs per row go back to
// the host (greedy decoding is k = 1: four bytes instead of the vocabulary's logits).
//
// Order: larger value first, equal values by lower index (the host default's rule in
// kernels/backend.h). NaN ranks below -inf; its value is returned as read.
//
// Each thread keeps the best of its own columns (c = tid + m * blockDim) that has not been
// chosen yet. A round picks the block's best of those (warp shuffles, then one warp over the
// warps' winners), and only the thread that owned the winner rescans its columns for its next
// best - the one ranking just below the winner. So a row is read once plus k short rescans of
// width / blockDim columns, and k rounds of a block reduction.
#include <climits>

#include "kernels/cuda/device_util.cuh"

namespace sbits::kernels::cuda {
namespace {

constexpr int kTopKThreads = 512;

struct Ranked {
  float v;  // NaN mapped to -inf
  int32_t i;
};

__device__ __forceinline__ bool ranks_before(const Ranked& a, const Ranked& b) {
  return a.v > b.v || (a.v == b.v && a.i < b.i);
}

__device__ __forceinline__ Ranked warp_best(Ranked r) {
  for (int o = 16; o > 0; o >>= 1) {
    const Ranked other{__shfl_xor_sync(0xffffffffu, r.v, o), __shfl_xor_sync(0xffffffffu, r.i, o)};
    if (ranks_before(other, r)) r = other;
  }
  return r;
}

// The best of this thread's columns that rank after `after` ({-inf, INT_MAX} when none is left,
// which ranks after every column).
__device__ Ranked scan_columns(const float* row, int64_t width, const Ranked& after) {
  Ranked best{-INFINITY, INT_MAX};
#pragma unroll 4
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
    const float x = row[c];
    const Ranked r{x != x ? -INFINITY : x, int32_t(c)};
    if (ranks_before(after, r) && ranks_before(r, best)) best = r;
  }
  return best;
}

__global__ void __launch_bounds__(kTopKThreads) top_k_kernel(const TopKArgs a) {
  __shared__ Ranked warp_winner[kTopKThreads / 32];
  __shared__ Ranked winner;
  const float* row = a.logits + int64_t(blockIdx.x) * a.width;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  Ranked mine = scan_columns(row, a.width, Ranked{INFINITY, -1});  // {inf, -1} ranks first
  for (int64_t j = 0; j < a.k; ++j) {
    const Ranked w = warp_best(mine);
    if (lane == 0) warp_winner[warp] = w;
    __syncthreads();
    if (warp == 0) {
      Ranked r = lane < int(blockDim.x / 32) ? warp_winner[lane] : Ranked{-INFINITY, INT_MAX};
      r = warp_best(r);
      if (lane == 0) {
        winner = r;
        a.ids[int64_t(blockIdx.x) * a.k + j] = r.i;
        a.vals[int64_t(blockIdx.x) * a.k + j] = row[r.i];
      }
    }
    __syncthreads();
    const Ranked chosen = winner;
    if (chosen.i % int32_t(blockDim.x) == int32_t(threadIdx.x)) mine = scan_columns(row, a.width, chosen);
    __syncthreads();  // winner and warp_winner are rewritten by the next round
  }
}

}  // namespace

void launch_top_k(const TopKArgs& a, const ExecContext& c) {
  if (a.n == 0) return;
  top_k_kernel<<<unsigned(a.n), kTopKThreads, 0, c.stream>>>(a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace sbits::kernels::cuda
