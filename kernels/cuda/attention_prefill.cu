// Prefill attention: n > 8 query rows of one slot, head_dim 64 or 128 (cuda_ops.cpp decides;
// other batches take attention.cu). A block takes 64 query rows of one head and walks the
// cached positions up to the last of its rows' positions in blocks of 32, with the block's
// queries, keys and values staged in shared memory as f32: each key and value row read from
// the cache serves 64 queries. attention.cu (a warp per row and head, one position per lane)
// re-reads every key and value for each query row: 718 us per layer of a 512-row chunk of the
// 7B on an H200, 29% of its prefill (device run 53).
//
// Threads: 256, thread t = 16 ti + tj. It holds query rows ti + 16 a (a < 4) and, of each key
// block, the scores of keys tj + 16 b (b < 2); of the output, dimensions tj + 16 c (c < HD / 16)
// of its rows. A row's 16 threads are one half of a warp: its running max and sum are reduced
// by shuffles within the half, its probabilities go through shared memory to the same 16
// threads, so only the staging of each key block needs the whole block.
// Numerics as attention.cu: s = scale * dot(q, k), the dot summed over d ascending in f32, an
// online softmax in f32, values accumulated in f32; only the order of the sums differs from the
// CPU's. Position p is visible to a row at position pos when p <= pos (the host has checked
// that every such position is stored).
#include <cmath>
#include <mutex>

#include "kernels/cuda/device_util.cuh"

namespace sbits::kernels::cuda {
namespace {

constexpr int kQRows = 64, kKeys = 32, kThreads = 256;
constexpr int kRowsPerThread = kQRows / 16, kKeysPerThread = kKeys / 16;

// Row strides in floats: +4 keeps rows 16-byte aligned for float4 reads and staggers them
// across banks.
template <int HD>
struct Smem {
  static constexpr int kLd = HD + 4, kPld = kKeys + 4;
  static constexpr int kQ = 0, kK = kQ + kQRows * kLd, kV = kK + kKeys * kLd, kP = kV + kKeys * HD;
  static constexpr size_t kBytes = size_t(kP + kQRows * kPld) * sizeof(float);
};

// Keys and values p0 .. p0 + nk - 1 of the cache rows at `base` into shared memory (zeros past
// nk), 8 elements per thread and step.
template <int HD, bool kF16>
__device__ __forceinline__ void stage_kv(const AttentionArgs& a, int64_t base, int p0, int nk, float* ks, float* vs) {
  using S = Smem<HD>;
  for (int i = threadIdx.x * 8; i < kKeys * HD; i += kThreads * 8) {
    const int j = i / HD, d = i % HD;
    float k8[8] = {}, v8[8] = {};
    if (j < nk) {
      const int64_t at = base + int64_t(p0 + j) * HD + d;
      if constexpr (kF16) {
        const uint4 ku = *reinterpret_cast<const uint4*>(static_cast<const __half*>(a.k_cache) + at);
        const uint4 vu = *reinterpret_cast<const uint4*>(static_cast<const __half*>(a.v_cache) + at);
        const uint32_t kw[4] = {ku.x, ku.y, ku.z, ku.w}, vw[4] = {vu.x, vu.y, vu.z, vu.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 kf = __half22float2(as_half2(kw[e])), vf = __half22float2(as_half2(vw[e]));
          k8[2 * e] = kf.x, k8[2 * e + 1] = kf.y, v8[2 * e] = vf.x, v8[2 * e + 1] = vf.y;
        }
      } else {
        const float4* kp = reinterpret_cast<const float4*>(static_cast<const float*>(a.k_cache) + at);
        const float4* vp = reinterpret_cast<const float4*>(static_cast<const float*>(a.v_cache) + at);
        const float4 k0 = kp[0], k1 = kp[1], v0 = vp[0], v1 = vp[1];
        k8[0] = k0.x, k8[1] = k0.y, k8[2] = k0.z, k8[3] = k0.w, k8[4] = k1.x, k8[5] = k1.y, k8[6] = k1.z, k8[7] = k1.w;
        v8[0] = v0.x, v8[1] = v0.y, v8[2] = v0.z, v8[3] = v0.w, v8[4] = v1.x, v8[5] = v1.y, v8[6] = v1.z, v8[7] = v1.w;
      }
    }
    float4* kd = reinterpret_cast<float4*>(ks + j * S::kLd + d);
    float4* vd = reinterpret_cast<float4*>(vs + j * HD + d);
    kd[0] = make_float4(k8[0], k8[1], k8[2], k8[3]);
    kd[1] = make_float4(k8[4], k8[5], k8[6], k8[7]);
    vd[0] = make_float4(v8[0], v8[1], v8[2], v8[3]);
    vd[1] = make_float4(v8[4], v8[5], v8[6], v8[7]);
  }
}

// Max and sum over the 16 threads of a row (one half of a warp).
__device__ __forceinline__ float half_warp_max(float v) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float half_warp_sum(float v) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Scores of the thread's rows ti + 16 i and keys tj + 16 b of the staged block: dot products
// over d ascending, 4 dimensions per shared-memory read.
template <int HD>
__device__ __forceinline__ void block_dots(const float* qs, const float* ks, int ti, int tj,
                                           float (&s)[kRowsPerThread][kKeysPerThread]) {
  using S = Smem<HD>;
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
    for (int b = 0; b < kKeysPerThread; ++b) s[i][b] = 0.0f;
  for (int d = 0; d < HD; d += 4) {
    float4 q4[kRowsPerThread], k4[kKeysPerThread];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) q4[i] = *reinterpret_cast<const float4*>(qs + (ti + 16 * i) * S::kLd + d);
#pragma unroll
    for (int b = 0; b < kKeysPerThread; ++b) k4[b] = *reinterpret_cast<const float4*>(ks + (tj + 16 * b) * S::kLd + d);
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
      for (int b = 0; b < kKeysPerThread; ++b) {
        s[i][b] = fmaf(q4[i].x, k4[b].x, s[i][b]);
        s[i][b] = fmaf(q4[i].y, k4[b].y, s[i][b]);
        s[i][b] = fmaf(q4[i].z, k4[b].z, s[i][b]);
        s[i][b] = fmaf(q4[i].w, k4[b].w, s[i][b]);
      }
  }
}

// One row's online-softmax step over its keys p + 16 b of the block (visible when <= pos): the
// running max m and sum l, the accumulators rescaled, the probabilities to prow[16 b].
template <int kDims>
__device__ __forceinline__ void softmax_step(const float (&s)[kKeysPerThread], int p, int pos, float scale, float& m,
                                             float& l, float (&acc)[kDims], float* prow) {
  float e[kKeysPerThread], block_max = -INFINITY;
#pragma unroll
  for (int b = 0; b < kKeysPerThread; ++b) {
    e[b] = p + 16 * b <= pos ? scale * s[b] : -INFINITY;
    block_max = fmaxf(block_max, e[b]);
  }
  const float mn = fmaxf(m, half_warp_max(block_max));
  const float c = mn == -INFINITY ? 1.0f : expf(m - mn);  // 0 on the row's first keys
  float sum = 0.0f;
#pragma unroll
  for (int b = 0; b < kKeysPerThread; ++b) {
    e[b] = e[b] == -INFINITY ? 0.0f : expf(e[b] - mn);
    sum += e[b];
    prow[16 * b] = e[b];
  }
  l = l * c + half_warp_sum(sum);
  m = mn;
#pragma unroll
  for (int k = 0; k < kDims; ++k) acc[k] *= c;
}

// acc[i][k] += sum_j p[row ti + 16 i][j] v[j][tj + 16 k] over the block's keys.
template <int HD>
__device__ __forceinline__ void add_values(const float* ps, const float* vs, int ti, int tj,
                                           float (&acc)[kRowsPerThread][HD / 16]) {
  using S = Smem<HD>;
  for (int j = 0; j < kKeys; j += 4) {
    float4 p4[kRowsPerThread];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) p4[i] = *reinterpret_cast<const float4*>(ps + (ti + 16 * i) * S::kPld + j);
#pragma unroll
    for (int jj = 0; jj < 4; ++jj)
#pragma unroll
      for (int k = 0; k < HD / 16; ++k) {
        const float v = vs[(j + jj) * HD + tj + 16 * k];
#pragma unroll
        for (int i = 0; i < kRowsPerThread; ++i) {
          const float p = jj == 0 ? p4[i].x : jj == 1 ? p4[i].y : jj == 2 ? p4[i].z : p4[i].w;
          acc[i][k] = fmaf(p, v, acc[i][k]);
        }
      }
  }
}

template <int HD, bool kF16>
__global__ void __launch_bounds__(kThreads) attention_prefill_kernel(const AttentionArgs a) {
  using S = Smem<HD>;
  constexpr int kDims = HD / 16;
  pdl_enter(a);
  extern __shared__ __align__(16) float smem[];
  float *qs = smem + S::kQ, *ks = smem + S::kK, *vs = smem + S::kV, *ps = smem + S::kP;
  __shared__ int last_pos;
  const int t = threadIdx.x, ti = t / 16, tj = t % 16;
  const int64_t r0 = int64_t(blockIdx.x) * kQRows, h = blockIdx.y;
  const int64_t kv_head = h / (a.n_heads / a.n_kv_heads);
  if (t == 0) last_pos = -1;
  for (int i = t * 4; i < kQRows * HD; i += kThreads * 4) {  // queries, zeros past row n
    const int r = i / HD, d = i % HD;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r0 + r < a.n) v = *reinterpret_cast<const float4*>(a.q + ((r0 + r) * a.n_heads + h) * HD + d);
    *reinterpret_cast<float4*>(qs + r * S::kLd + d) = v;
  }
  __syncthreads();
  int pos[kRowsPerThread];  // -1: a row past n, which sees no position
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) pos[i] = r0 + ti + 16 * i < a.n ? a.rows[r0 + ti + 16 * i].pos : -1;
  if (tj == 0)
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) atomicMax(&last_pos, pos[i]);
  const int64_t base = ((a.layer * a.n_slots + a.rows[r0].slot) * a.n_kv_heads + kv_head) * a.n_ctx * HD;
  const float scale = float(1.0 / sqrt(double(HD)));
  float m[kRowsPerThread], l[kRowsPerThread], acc[kRowsPerThread][kDims];
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    m[i] = -INFINITY, l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < kDims; ++c) acc[i][c] = 0.0f;
  }
  __syncthreads();  // last_pos
  const int end = last_pos + 1;
  for (int p0 = 0; p0 < end; p0 += kKeys) {
    stage_kv<HD, kF16>(a, base, p0, min(kKeys, end - p0), ks, vs);
    __syncthreads();
    float s[kRowsPerThread][kKeysPerThread];
    block_dots<HD>(qs, ks, ti, tj, s);
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i)
      softmax_step<kDims>(s[i], p0 + tj, pos[i], scale, m[i], l[i], acc[i], ps + (ti + 16 * i) * S::kPld + tj);
    __syncwarp();  // a row's probabilities come from the same 16 threads that read them
    add_values<HD>(ps, vs, ti, tj, acc);
    __syncthreads();  // before the next block's keys and probabilities overwrite these
  }
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    if (pos[i] < 0) continue;
    float* out = a.out + ((r0 + ti + 16 * i) * a.n_heads + h) * HD;
    const float inv = 1.0f / l[i];
#pragma unroll
    for (int k = 0; k < kDims; ++k) out[tj + 16 * k] = acc[i][k] * inv;
  }
}

template <int HD, bool kF16>
void launch_for(const AttentionArgs& a, const ExecContext& c) {
  auto* kernel = attention_prefill_kernel<HD, kF16>;
  static std::once_flag once;  // the opt-in above 48 KB, once per kernel
  std::call_once(once, [&] {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Smem<HD>::kBytes)));
  });
  const dim3 grid(unsigned((a.n + kQRows - 1) / kQRows), unsigned(a.n_heads));
  launch_pdl(kernel, grid, kThreads, Smem<HD>::kBytes, c, a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

bool attention_prefill_fits(int64_t head_dim) { return head_dim == 64 || head_dim == 128; }

void launch_attention_prefill(const AttentionArgs& a, const ExecContext& c) {
  if (a.n == 0) return;
  if (a.head_dim == 128)
    a.f16 ? launch_for<128, true>(a, c) : launch_for<128, false>(a, c);
  else if (a.head_dim == 64)
    a.f16 ? launch_for<64, true>(a, c) : launch_for<64, false>(a, c);
  else
    fail("attention", "the prefill kernel takes head_dim 64 or 128, got ", a.head_dim);
}

}  // namespace sbits::kernels::cuda
