// Attention over the KV cache, split along the positions (flash-decoding): block (heads h..h+3,
// split s, row r) runs an online softmax over positions [s * chunk, (s + 1) * chunk) of its
// row's context, one warp per query head (in decode the chunk follows the row's length:
// row_chunk). The split count depends on the cache size and the batch, never on the
// positions, so a captured graph stays valid as the context grows: each block reads its
// row's length from the staged rows, and splits past it return at once. The
// last of a row's used splits to finish (a counter per row and head block, as in split-K)
// merges them, in split order, so the result does not depend on timing; with one used split
// the block writes the output directly.
//
// Inside a warp: lane j scores position p0 + j (the whole head_dim dot product, 16-byte loads
// when head_dim allows), then the 32 weights are broadcast one by one and each lane
// accumulates its own dimensions (lane, lane + 32, ...) of the values, reading each value row
// with one coalesced warp access. Scores are scale * dot(q, k), as on the CPU.
#include <cmath>

#include "kernels/cuda/convert_x.cuh"
#include "kernels/cuda/device_util.cuh"

namespace sbits::kernels::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxHeadDim = 256;
constexpr int kDimsPerLane = kMaxHeadDim / 32;
constexpr int kMaxSplits = kAttentionMaxSplits;
constexpr int kLaneDimsHd = 128;  // attend_lane_dims's head_dim

template <bool kF16>
__device__ __forceinline__ float kv_at(const void* base, int64_t i) {
  if constexpr (kF16) return __half2float(static_cast<const __half*>(base)[i]);
  return static_cast<const float*>(base)[i];
}

// dot(q, k) over hd elements of one cached key row.
template <bool kF16>
__device__ __forceinline__ float key_dot(const float* q, const void* k_cache, int64_t row_at, int hd) {
  float s = 0.0f;
  if constexpr (kF16) {
    const __half* k = static_cast<const __half*>(k_cache) + row_at;
    if (hd % 8 == 0) {  // 16-byte loads: the row starts at a multiple of 8 halves
      for (int d = 0; d < hd; d += 8) {
        const uint4 u = *reinterpret_cast<const uint4*>(k + d);
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 f = __half22float2(as_half2(w[e]));
          s = fmaf(q[d + 2 * e], f.x, s);
          s = fmaf(q[d + 2 * e + 1], f.y, s);
        }
      }
      return s;
    }
  }
  for (int d = 0; d < hd; ++d) s = fmaf(q[d], kv_at<kF16>(k_cache, row_at + d), s);
  return s;
}

// Merges the used splits of head h, row r (one warp): out = sum_s acc_s e^(m_s - M) / sum_s l_s
// e^(m_s - M). Partials come from other blocks: read through L2 (__ldcg).
__device__ void merge_splits(const AttentionArgs& a, int64_t r, int64_t h, int used, float* weight) {
  const int lane = threadIdx.x & 31, hd = int(a.head_dim);
  const float* part = a.partial + (r * a.n_heads + h) * a.splits * (hd + 2);
  float big = -INFINITY;
  for (int s = lane; s < used; s += 32) big = fmaxf(big, __ldcg(part + s * (hd + 2) + hd));
  big = warp_max(big);
  float l = 0.0f;
  for (int s = lane; s < used; s += 32) {
    const float w = expf(__ldcg(part + s * (hd + 2) + hd) - big);
    weight[s] = w;
    l += __ldcg(part + s * (hd + 2) + hd + 1) * w;
  }
  l = warp_sum(l);
  __syncwarp();
  // All of a lane's dimensions at once, several splits per iteration: at 3900 positions a head
  // has ~60 splits, and a loop per dimension made the merge a chain of L2 round trips. Each
  // dimension still sums its splits in split order.
  float o[kDimsPerLane];
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) o[i] = 0.0f;
#pragma unroll 4
  for (int s = 0; s < used; ++s) {
    const float w = weight[s];
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i)
      if (lane + 32 * i < hd) o[i] += __ldcg(part + s * (hd + 2) + lane + 32 * i) * w;
  }
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i)
    if (lane + 32 * i < hd) a.out[(r * a.n_heads + h) * hd + lane + 32 * i] = o[i] / l;
}

// Positions per split for a row with `end` stored positions. Decode (a.adaptive): about
// 12 sqrt(end / 128), to the nearest multiple of 8 - a split is one warp's walk over its chunk,
// the merge a pass over the used splits. On an H200 with attend_lane_dims, minimum chunks of
// 8 / 16 / 32 / 64 gave 355 / 356 / 351 / 327 tok/s at 64 positions, all within 2% at 512, and
// 244 / 244 / 248 / 257 at 3900 (device run 62; the per-position kernel before it had favoured
// 8 sqrt(end / 128), run 9) - and never so small that the row needs more than the launch's
// splits. The launch has splits for the smallest chunk, so this can follow the context without
// re-recording a captured graph.
__device__ __forceinline__ int64_t row_chunk(const AttentionArgs& a, int64_t end) {
  if (!a.adaptive) return a.chunk;
  int64_t c = (int64_t(12.0f * sqrtf(float(end) / 128.0f)) + 4) / 8 * 8;
  c = max(c, a.chunk);
  return max(c, ((end + a.splits - 1) / a.splits + 7) / 8 * 8);
}

// The warp's result for one head over positions [p_begin, p_end): with `direct`, out[d] = acc[d] / l;
// otherwise the split's partial {acc[0 .. hd), m, l} for merge_splits.
__device__ __forceinline__ void store_split(float* dst, bool direct, int d, float acc, float inv) {
  dst[d] = direct ? acc * inv : acc;
}

// Any head_dim: lane j scores position p0 + j (the whole dot product), then the weights are
// broadcast one by one and each lane accumulates dimensions lane, lane + 32, ... of the values.
template <bool kF16>
__device__ __forceinline__ void attend_lane_positions(const AttentionArgs& a, int64_t r, int64_t h, int64_t base,
                                                      int64_t p_begin, int64_t p_end, bool direct, float* dst,
                                                      float* q) {
  const int lane = threadIdx.x & 31, hd = int(a.head_dim);
  for (int d = lane; d < hd; d += 32) q[d] = a.q[(r * a.n_heads + h) * hd + d];
  __syncwarp();
  const float scale = float(1.0 / sqrt(double(hd)));
  float m = -INFINITY, l = 0.0f, acc[kDimsPerLane];
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) acc[i] = 0.0f;
  for (int64_t p0 = p_begin; p0 < p_end; p0 += 32) {
    const int64_t p = p0 + lane;
    const float s = p < p_end ? scale * key_dot<kF16>(q, a.k_cache, base + p * hd, hd) : -INFINITY;
    const float block_max = warp_max(s);
    if (block_max > m) {  // warp-uniform
      const float c = expf(m - block_max);  // 0 on the first block
      l *= c;
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) acc[i] *= c;
      m = block_max;
    }
    const float e = p < p_end ? expf(s - m) : 0.0f;
    l += warp_sum(e);
    const int nb = int(min(int64_t(32), p_end - p0));
    for (int j = 0; j < nb; ++j) {
      const float ej = __shfl_sync(0xffffffffu, e, j);
      const int64_t row_at = base + (p0 + j) * hd;
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) acc[i] = fmaf(ej, kv_at<kF16>(a.v_cache, row_at + d), acc[i]);
      }
    }
  }
  const float inv = 1.0f / l;
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i)
    if (lane + 32 * i < hd) store_split(dst, direct, lane + 32 * i, acc[i], inv);
  if (!direct && lane == 0) dst[hd] = m, dst[hd + 1] = l;
}

// head_dim 128, f16 cache: lane owns dimensions 4 lane .. 4 lane + 3 of q, the keys and the
// values, so a cached row is one 8-byte load per lane; a step takes 8 positions, whose key and
// value loads are all issued before their sums, and the next step's while this one computes.
// The per-position form above, at the 8-position chunks of short contexts, kept 24 of 32 lanes
// idle while the others ran 128-term dot products, and walked the values one position, one
// dependent load, at a time.
__device__ __forceinline__ void attend_lane_dims(const AttentionArgs& a, int64_t r, int64_t h, int64_t base,
                                                 int64_t p_begin, int64_t p_end, bool direct, float* dst) {
  constexpr int kStep = 8;
  const int lane = threadIdx.x & 31;
  const float4 q = *reinterpret_cast<const float4*>(a.q + (r * a.n_heads + h) * kLaneDimsHd + 4 * lane);
  const __half* kc = static_cast<const __half*>(a.k_cache) + base + 4 * lane;
  const __half* vc = static_cast<const __half*>(a.v_cache) + base + 4 * lane;
  const float scale = float(1.0 / sqrt(double(kLaneDimsHd)));
  float m = -INFINITY, l = 0.0f, acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  uint2 next_k[kStep], next_v[kStep];
  const auto load_step = [&](int64_t p0) {
#pragma unroll
    for (int j = 0; j < kStep; ++j) {
      const int64_t p = min(p0 + j, p_end - 1);  // past the end: a repeat, weighted 0 below
      next_k[j] = *reinterpret_cast<const uint2*>(kc + p * kLaneDimsHd);
      next_v[j] = *reinterpret_cast<const uint2*>(vc + p * kLaneDimsHd);
    }
  };
  load_step(p_begin);
  for (int64_t p0 = p_begin; p0 < p_end; p0 += kStep) {
    uint2 kw[kStep], vw[kStep];
#pragma unroll
    for (int j = 0; j < kStep; ++j) kw[j] = next_k[j], vw[j] = next_v[j];
    if (p0 + kStep < p_end) load_step(p0 + kStep);  // in flight while this step computes
    float s[kStep];
#pragma unroll
    for (int j = 0; j < kStep; ++j) {
      const float2 k01 = __half22float2(as_half2(kw[j].x)), k23 = __half22float2(as_half2(kw[j].y));
      s[j] = fmaf(q.x, k01.x, fmaf(q.y, k01.y, fmaf(q.z, k23.x, q.w * k23.y)));
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
#pragma unroll
      for (int j = 0; j < kStep; ++j) s[j] += __shfl_xor_sync(0xffffffffu, s[j], o);
    float block_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kStep; ++j) {
      s[j] = p0 + j < p_end ? scale * s[j] : -INFINITY;
      block_max = fmaxf(block_max, s[j]);
    }
    if (block_max > m) {  // warp-uniform
      const float c = expf(m - block_max);
      l *= c;
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[i] *= c;
      m = block_max;
    }
#pragma unroll
    for (int j = 0; j < kStep; ++j) {
      const float e = p0 + j < p_end ? expf(s[j] - m) : 0.0f;
      l += e;
      const float2 v01 = __half22float2(as_half2(vw[j].x)), v23 = __half22float2(as_half2(vw[j].y));
      acc[0] = fmaf(e, v01.x, acc[0]), acc[1] = fmaf(e, v01.y, acc[1]);
      acc[2] = fmaf(e, v23.x, acc[2]), acc[3] = fmaf(e, v23.y, acc[3]);
    }
  }
  const float inv = 1.0f / l;
#pragma unroll
  for (int i = 0; i < 4; ++i) store_split(dst, direct, 4 * lane + i, acc[i], inv);
  if (!direct && lane == 0) dst[kLaneDimsHd] = m, dst[kLaneDimsHd + 1] = l;
}

// Head h of the one row, once final, converted for the matvec that reads it (wo) as convert_x
// would: its f16 copy and variant 6's digits, a warp's 32 columns per pack unit (head_dim % 32
// == 0, so units do not straddle heads). The lanes read what they all just wrote.
__device__ __forceinline__ void convert_head(const AttentionArgs& a, int64_t h) {
  if (!a.xq) return;
  __syncwarp();
  const int lane = threadIdx.x & 31;
  for (int64_t c = h * a.head_dim + lane; c < (h + 1) * a.head_dim; c += 32)
    store_converted(reinterpret_cast<__half*>(a.x_half), a.xq, a.xq_meta, c, a.out[c]);
}

template <bool kF16>
__global__ void __launch_bounds__(kWarps * 32) attention_kernel(const AttentionArgs a) {
  pdl_enter(a);
  __shared__ float q_smem[kWarps][kMaxHeadDim];
  __shared__ float weight_smem[kWarps][kMaxSplits];
  __shared__ uint32_t last;
  const int warp = threadIdx.x >> 5;
  const int64_t h = int64_t(blockIdx.x) * kWarps + warp, split = blockIdx.y, r = blockIdx.z;
  const int hd = int(a.head_dim);
  const RowInfo ri = a.rows[r];
  const int64_t end = ri.pos + 1;
  const int64_t chunk = row_chunk(a, end);
  const int used = int(min(a.splits, (end + chunk - 1) / chunk));
  if (split >= used) return;  // the whole block: nothing of this row's context is here
  const bool direct = used == 1;
  const int64_t p_begin = split * chunk, p_end = min(end, p_begin + chunk);
  if (h < a.n_heads) {  // warps past the last head skip to the block's barriers
    const int64_t kv_head = h / (a.n_heads / a.n_kv_heads);
    const int64_t base = ((a.layer * a.n_slots + ri.slot) * a.n_kv_heads + kv_head) * a.n_ctx * a.head_dim;
    float* dst = direct ? a.out + (r * a.n_heads + h) * hd : a.partial + ((r * a.n_heads + h) * a.splits + split) * (hd + 2);
    if (kF16 && hd == kLaneDimsHd)
      attend_lane_dims(a, r, h, base, p_begin, p_end, direct, dst);
    else
      attend_lane_positions<kF16>(a, r, h, base, p_begin, p_end, direct, dst, q_smem[warp]);
  }
  if (direct) {  // block-uniform
    if (h < a.n_heads) convert_head(a, h);
    return;
  }
  __threadfence();
  __syncthreads();
  uint32_t* counter = a.counters + r * gridDim.x + blockIdx.x;
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == uint32_t(used - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  if (h < a.n_heads) {
    merge_splits(a, r, h, used, weight_smem[warp]);
    convert_head(a, h);
  }
  if (threadIdx.x == 0) *counter = 0;  // ready for the next launch
}

}  // namespace

void launch_attention(const AttentionArgs& a, const ExecContext& c) {
  if (a.n == 0) return;
  const dim3 grid(unsigned((a.n_heads + kWarps - 1) / kWarps), unsigned(a.splits), unsigned(a.n));
  if (a.f16)
    launch_pdl(attention_kernel<true>, grid, kWarps * 32, 0, c, a);
  else
    launch_pdl(attention_kernel<false>, grid, kWarps * 32, 0, c, a);
  CUDA_CHECK_LAUNCH();
}

int attention_max_head_dim() { return kMaxHeadDim; }

}  // namespace sbits::kernels::cuda
