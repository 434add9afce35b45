// top_k on the device; only k (id, value) pairs per row go back to the host (greedy decoding
// is k = 1: four bytes instead of the vocabulary's logits).
//
// A wide row is split over TopKArgs::blocks blocks (one block per row took 46 us for 32000
// logits on an H200: a chain of dependent loads per thread). Each block selects the k best of
// its columns into candidate arrays; the last block of the row to finish (a counter, as in
// split-K) selects the k best of the blocks x k candidates, with the same rule, and writes the
// results. Narrow rows take one block and write directly.
//
// Order: larger value first, equal values by lower index (the host default's rule in
// kernels/backend.h). NaN ranks below -inf; its value is returned as read.
//
// A block selects its k best in one of two ways:
//  - rounds (k <= kRoundsMaxK, and the fallback): each thread keeps the best of its own columns
//    (c = tid + m * blockDim) not chosen yet; a round picks the block's best of those (warp
//    shuffles, then one warp over the warps' winners), and only the thread that owned the winner
//    rescans its columns for its next best. A row is read once plus k short rescans, but each
//    round is three block barriers: at k = 40, about 100 us for a 32000-column row (H200).
//  - radix selection (larger k): the k-th best key is found a byte at a time from the top, by
//    counting in 256 bins the keys that share the bytes found so far (four passes over the
//    source); then every entry above it and every entry equal to it are gathered, and each
//    gathered entry's rank is the number of gathered entries ranking before it. When more than
//    kGatherMax entries tie at the k-th key, the block falls back to rounds.
#include <climits>

#include "kernels/cuda/device_util.cuh"

namespace sbits::kernels::cuda {
namespace {

constexpr int kTopKThreads = 512;
constexpr int kRoundsMaxK = 4;
constexpr int kGatherMax = 256;  // entries the radix selection gathers in shared memory

struct Ranked {
  float v;    // NaN mapped to -inf
  int32_t i;  // column
  int32_t p;  // position in the block's source (its owner is thread p % blockDim), -1: none
};

__device__ __forceinline__ bool ranks_before(const Ranked& a, const Ranked& b) {
  return a.v > b.v || (a.v == b.v && a.i < b.i);
}

__device__ __forceinline__ Ranked warp_best(Ranked r) {
  for (int o = 16; o > 0; o >>= 1) {
    const Ranked other{__shfl_xor_sync(0xffffffffu, r.v, o), __shfl_xor_sync(0xffffffffu, r.i, o),
                       __shfl_xor_sync(0xffffffffu, r.p, o)};
    if (ranks_before(other, r)) r = other;
  }
  return r;
}

// The best of this thread's positions (p = tid + m * blockDim < count) that rank after `after`
// ({-inf, INT_MAX} when none is left, which ranks after every column).
template <class Src>
__device__ Ranked scan(const Src& src, int count, const Ranked& after) {
  Ranked best{-INFINITY, INT_MAX, -1};
#pragma unroll 4
  for (int p = threadIdx.x; p < count; p += blockDim.x) {
    const Ranked r = src(p);
    if (ranks_before(after, r) && ranks_before(r, best)) best = r;
  }
  return best;
}

// k rounds of a block argmax over src's count positions; thread 0 calls emit(j, winner).
template <class Src, class Emit>
__device__ void block_top_k_rounds(const Src& src, int count, int k, Emit&& emit) {
  __shared__ Ranked warp_winner[kTopKThreads / 32];
  __shared__ Ranked winner;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  Ranked mine = scan(src, count, Ranked{INFINITY, -1, -1});  // {inf, -1} ranks first
  for (int j = 0; j < k; ++j) {
    const Ranked w = warp_best(mine);
    if (lane == 0) warp_winner[warp] = w;
    __syncthreads();
    if (warp == 0) {
      Ranked r = lane < int(blockDim.x / 32) ? warp_winner[lane] : Ranked{-INFINITY, INT_MAX, -1};
      r = warp_best(r);
      if (lane == 0) {
        winner = r;
        emit(j, r);
      }
    }
    __syncthreads();
    const Ranked chosen = winner;
    if (chosen.p >= 0 && chosen.p % int(blockDim.x) == int(threadIdx.x)) mine = scan(src, count, chosen);
    __syncthreads();  // winner and warp_winner are rewritten by the next round
  }
}

// An unsigned key in the order of ranks_before's values (NaN is already -inf; -0 is 0, which it
// equals).
__device__ __forceinline__ uint32_t rank_key(float v) {
  const uint32_t u = __float_as_uint(v == 0.0f ? 0.0f : v);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}

// The key of src's need-th best entry, found a byte at a time (see the top). Returns {the key,
// how many of the `need` best equal it, how many entries equal it}.
template <class Src>
__device__ uint3 radix_select(const Src& src, int count, uint32_t need) {
  __shared__ uint32_t hist[256];
  __shared__ uint3 found;
  const int lane = threadIdx.x & 31;
  uint32_t prefix = 0, equal = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    const uint32_t high = shift == 24 ? 0u : ~0u << (shift + 8);
#pragma unroll 4
    for (int p = threadIdx.x; p < count; p += blockDim.x) {
      const uint32_t key = rank_key(src(p).v);
      if ((key & high) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x < 32) {  // lane l counts bins 255 - 8l down to 248 - 8l
      uint32_t c[8], sum = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) sum += c[j] = hist[255 - 8 * lane - j];
      uint32_t above = sum;  // inclusive scan over the lanes, then exclusive
      for (int o = 1; o < 32; o <<= 1) {
        const uint32_t t = __shfl_up_sync(0xffffffffu, above, o);
        if (lane >= o) above += t;
      }
      above -= sum;
      if (above < need && need <= above + sum) {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          if (above < need && need <= above + c[j])
            found = make_uint3(prefix | uint32_t(255 - 8 * lane - j) << shift, need - above, c[j]);
          above += c[j];
        }
      }
    }
    __syncthreads();
    prefix = found.x, need = found.y, equal = found.z;
  }
  return make_uint3(prefix, need, equal);
}

// The k best of src's count positions; emit(j, entry) for rank j, from any thread. Positions past
// count (a short last slice) rank as {-inf, INT_MAX}, after every column.
template <class Src, class Emit>
__device__ void block_top_k(const Src& src, int count, int k, Emit&& emit) {
  if (k <= kRoundsMaxK) return block_top_k_rounds(src, count, k, emit);
  __shared__ Ranked gathered[kGatherMax];
  __shared__ uint32_t n_gathered;
  const int kk = min(k, count);
  const uint3 kth = radix_select(src, count, uint32_t(kk));
  if (uint32_t(kk) - kth.y + kth.z > uint32_t(kGatherMax)) return block_top_k_rounds(src, count, k, emit);
  if (threadIdx.x == 0) n_gathered = 0;
  __syncthreads();
  for (int p = threadIdx.x; p < count; p += blockDim.x) {
    const Ranked r = src(p);
    if (rank_key(r.v) >= kth.x) gathered[atomicAdd(&n_gathered, 1u)] = r;
  }
  __syncthreads();
  const int m = int(n_gathered);
  for (int g = threadIdx.x; g < m; g += blockDim.x) {
    int rank = 0;
    for (int o = 0; o < m; ++o) rank += ranks_before(gathered[o], gathered[g]);
    if (rank < kk) emit(rank, gathered[g]);
  }
  for (int j = kk + int(threadIdx.x); j < k; j += blockDim.x) emit(j, Ranked{-INFINITY, INT_MAX, -1});
  __syncthreads();  // gathered and the selection's shared state are reused by a second call
}

// Block (b, r): columns [b * per_block, (b + 1) * per_block) of row r.
__global__ void __launch_bounds__(kTopKThreads) top_k_kernel(const TopKArgs a) {
  pdl_enter(a);
  __shared__ uint32_t last;
  const int64_t r = blockIdx.y, b = blockIdx.x;
  const float* row = a.logits + r * a.width;
  const int k = int(a.k);
  const int64_t c0 = b * a.per_block;
  const int count = int(min(a.per_block, a.width - c0));
  auto columns = [&](int p) {
    const float x = row[c0 + p];
    return Ranked{x != x ? -INFINITY : x, int32_t(c0 + p), p};
  };
  auto result = [&](int j, const Ranked& w) {
    a.ids[r * k + j] = w.i;
    a.vals[r * k + j] = row[w.i];  // as read (NaN stays NaN)
  };
  if (a.blocks == 1) {
    block_top_k(columns, count, k, result);
    return;
  }
  float* cv = a.cand_v + r * a.blocks * k;
  int32_t* ci = a.cand_i + r * a.blocks * k;
  block_top_k(columns, count, k, [&](int j, const Ranked& w) {
    cv[b * k + j] = w.v;
    ci[b * k + j] = w.i;
  });
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(a.counters + r, 1u) == uint32_t(a.blocks - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  auto candidates = [&](int p) { return Ranked{__ldcg(cv + p), __ldcg(ci + p), p}; };
  block_top_k(candidates, int(a.blocks) * k, k, result);
  if (threadIdx.x == 0) a.counters[r] = 0;  // ready for the next launch
}

}  // namespace

void launch_top_k(const TopKArgs& a, const ExecContext& c) {
  if (a.n == 0) return;
  launch_pdl(top_k_kernel, dim3(unsigned(a.blocks), unsigned(a.n)), kTopKThreads, 0, c, a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace sbits::kernels::cuda
