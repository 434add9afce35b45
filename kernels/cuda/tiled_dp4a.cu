// Variant 6 of the tiled matvec (n = 1): integer dot products straight from the format's tile
// layout, no tensor cores, no shared-memory staging.
//
// Why: variants 4 and 5 feed the tensor cores at n = 1, where 7 of every MMA's 8 columns are
// empty, and were latency-bound (run 15, 11008x4096 at 2 bits: 25% of issue slots busy, ~10
// warps per SM, ~500 warp instructions per 64 x 128 tile). Here a lane owns one pack unit (32
// columns) of one row at a time and multiplies its codes with x by dp4a, four products per
// instruction, into int32; registers are few, so many warps fit on a multiprocessor.
//
// x: convert_x (elementwise.cu xq_store) writes row 0 of x, rounded to f16 as for the other
// variants, per 32 columns as x ~ d (hi + lo / 256) with int8 digits hi, lo and
// d = max |x| / 127 over the 32 columns: at most ~d / 256 (2^-15 of the unit's largest |x|) from
// the f16 value. So sum_c q_c x_c = (d / 256) (256 sum q hi + sum q lo), both integer sums
// exact (|256 H + L| < 2^31 even for 8-bit codes: 255 * 127 * 32 * 257).
//
// Codes: in a plane of width P a word holds n = 32 / P codes, code i at bit P slot(i)
// (codec_plane.h). (w >> P cls) & mask(P) leaves in byte b the code
//     [2 cls, n/2 + 2 cls, 2 cls + 1, n/2 + 2 cls + 1][b]          cls = 0 .. 8/P - 1
// of that word: one class of four codes per dp4a. xq_store writes x's digits in that byte order
// for each plane width, word e = k (8/P) + cls for word k of the unit. A high plane (3, 5 and
// 6 bits) is moved to bit P0 of each byte by the same shift-and-mask, so both planes add into
// one pair of accumulators.
//
// Work split: block (x, y) owns 64-row strip x. A warp takes rows 8 (rg kSteps + j) + lane / 4,
// j < kSteps (kSteps = dp4a_steps: 2, 4 or 8), unit lane % 4 of each, for every tile of its chunk
// of tile columns: each step is 32 consecutive (row, unit) pairs, one contiguous run of every
// plane. 8 / kSteps warps share a chunk (row groups rg), so a block of 4 warps has kSteps / 2
// chunks (chunk kSteps / 2 y + slot). A lane keeps its kSteps rows' sums across the chunk's
// tiles; the 4 lanes of a row meet by shuffles at the end, the chunks in shared memory, the
// splits (grid y) as in variant 4's finish(), or within a thread-block cluster of the strip's
// splits (finish_rows_cluster): fixed orders, so results do not depend on timing.
// kSteps = 8 is the default (128 registers): a warp covers all 64 rows of its chunk's tiles,
// and with the split aiming for 12 warps per SM the 7B decoded 494 / 487 tok/s at 2.5 bpw
// against 470 / 463 for 4, +5% at 3.0 and 4.0 bpw too (H200, device run 89).
// Run 18, when splits filled the occupancy cap, had measured 4 fastest (292 vs 271 for 2 and 257
// for 8). 2- and 3-bit tiles are loaded one tile ahead (load_tile_words).
#include <cooperative_groups.h>

#include "kernels/cuda/convert_x.cuh"
#include "kernels/cuda/tiled_mma.cuh"

namespace sbits::kernels::cuda {
namespace {

using mma::ld_stream16;
using mma::ld_stream4;
using mma::ld_stream8;

// Unsigned codes (8-bit ones reach 255) times signed digits.
__device__ __forceinline__ int dp4a_us(uint32_t a, uint32_t b, int c) {
  int d;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

__host__ __device__ constexpr int plane_index(int P) { return P == 1 ? 0 : P == 2 ? 1 : P == 4 ? 2 : 3; }

// The unit's digits for plane width P: words 0..7 hi, 8..15 lo (xq_store's layout).
template <int P>
__device__ __forceinline__ void load_digits(const uint8_t* xq, int unit, uint32_t (&x)[16]) {
  const uint4* p = reinterpret_cast<const uint4*>(xq + plane_index(P) * 256 + unit * 64);
  static_for<4>([&](auto V) {
    const uint4 v = __ldg(p + V.value);
    x[4 * V.value] = v.x, x[4 * V.value + 1] = v.y, x[4 * V.value + 2] = v.z, x[4 * V.value + 3] = v.w;
  });
}

// The P words of one unit of a plane (16-byte aligned runs: unit * P * 4 bytes).
template <int P>
__device__ __forceinline__ void load_words(const uint32_t* plane, int unit, uint32_t (&w)[P]) {
  const uint32_t* p = plane + unit * P;
  if constexpr (P == 1) {
    w[0] = ld_stream4(p);
  } else if constexpr (P == 2) {
    const uint2 v = ld_stream8(p);
    w[0] = v.x, w[1] = v.y;
  } else {
    static_for<P / 4>([&](auto V) {
      const uint4 v = ld_stream16(p + 4 * V.value);
      w[4 * V.value] = v.x, w[4 * V.value + 1] = v.y, w[4 * V.value + 2] = v.z, w[4 * V.value + 3] = v.w;
    });
  }
}

// hi += sum (codes << kShift) x_hi, lo likewise, over the unit's words of one plane of width P.
template <int P, int kShift>
__device__ __forceinline__ void dot_plane(const uint32_t (&w)[P], const uint32_t (&x)[16], int& hi, int& lo) {
  constexpr int kClasses = 8 / P;
  constexpr uint32_t mask = (((1u << P) - 1u) * 0x01010101u) << kShift;
  static_for<P>([&](auto K) {
    static_for<kClasses>([&](auto C) {
      constexpr int e = K.value * kClasses + C.value;
      constexpr int s = P * C.value - kShift;  // right shift; negative: left
      uint32_t v;
      if constexpr (s >= 0)
        v = (w[K.value] >> s) & mask;
      else
        v = (w[K.value] << -s) & mask;
      hi = dp4a_us(v, x[e], hi);
      lo = dp4a_us(v, x[8 + e], lo);
    });
  });
}

// The arithmetic of one tile of B-bit codes, shared by the tiles read in place (dp4a_tile) and
// those loaded ahead (dot_tile_words) so that both sum in one order: y[j] += the lane's unit of
// row 8 (rg kSteps + j) + lane / 4. words(J, r, Int<k>{}, w) gives step J's words of row r: k = 0
// plane 0, 1 plane 1, 2 the {scale, min} word. They are asked for one part at a time, each just
// before its use, because that is where dp4a_tile loads them (asking for all three first moved
// its loads and changed the kernel's SASS). Rows past rows_t (a last, shorter strip) read row
// rows_t - 1 and are dropped, so that every load of the kSteps rows can be in flight at once.
template <int B, int kSteps, class Words>
__device__ __forceinline__ void dot_tile(int rows_t, int lane, int rg, const uint8_t* xq, const float* meta,
                                         Words&& words, float (&y)[kSteps]) {
  constexpr int P0 = quant::plane0_bits(B), P1 = quant::plane1_bits(B);
  const int u = lane & 3;
  uint32_t x0[16], x1[16];
  load_digits<P0>(xq, u, x0);
  if constexpr (P1 != 0) load_digits<P1>(xq, u, x1);
  const float2 m = __ldg(reinterpret_cast<const float2*>(meta) + u);  // {d / 256, sum x}
  static_for<kSteps>([&](auto J) {
    const int row = 8 * (rg * kSteps + J.value) + (lane >> 2), r = min(row, rows_t - 1);
    uint32_t w0[P0];
    words(J, r, Int<0>{}, w0);
    int hi = 0, lo = 0;
    dot_plane<P0, 0>(w0, x0, hi, lo);
    if constexpr (P1 != 0) {
      uint32_t w1[P1];
      words(J, r, Int<1>{}, w1);
      dot_plane<P1, P0>(w1, x1, hi, lo);
    }
    uint32_t sc[1];
    words(J, r, Int<2>{}, sc);
    const float2 f = __half22float2(as_half2(sc[0]));  // {scale, min}
    const float v = fmaf(f.x, float(hi * 256 + lo) * m.x, f.y * m.y);
    if (row < rows_t) y[J.value] += v;
  });
}

// A tile of the bitwidths not loaded ahead (4, 5, 6, 8), read from global memory in place.
template <int B, int kSteps>
__device__ __forceinline__ void dp4a_tile(const uint8_t* tile, int rows_t, int lane, int rg, const uint8_t* xq,
                                          const float* meta, float (&y)[kSteps]) {
  constexpr int P0 = quant::plane0_bits(B), P1 = quant::plane1_bits(B);
  const uint64_t b0 = quant::tile_plane_bytes(rows_t, 4, P0), b1 = quant::tile_plane_bytes(rows_t, 4, P1);
  const auto* p0 = reinterpret_cast<const uint32_t*>(tile);
  const auto* p1 = reinterpret_cast<const uint32_t*>(tile + b0);
  const auto* sc = reinterpret_cast<const uint32_t*>(tile + b0 + b1);
  const int u = lane & 3;
  dot_tile<B, kSteps>(rows_t, lane, rg, xq, meta, [&](auto, int r, auto K, auto& w) {
    if constexpr (K.value == 0) load_words<P0>(p0, r * 4 + u, w);
    if constexpr (K.value == 1) load_words<P1>(p1, r * 4 + u, w);
    if constexpr (K.value == 2) w[0] = ld_stream4(sc + r);
  }, y);
}

// 2- and 3-bit tiles, the bulk of a low-bit allocation, are loaded one tile ahead: the words of
// the lane's kSteps rows, per row {plane 0 word 0, word 1, plane 1 word, scale}, go to registers
// while the previous tile computes, so that a warp waits on DRAM about once per chunk rather
// than once per tile (variant 5's ring does the same through shared memory).
template <int kSteps>
using TileWords = uint32_t[4 * kSteps];
__host__ __device__ constexpr bool prefetched(int bits) { return bits == 2 || bits == 3; }

template <int B, int kSteps>
__device__ __forceinline__ void load_tile_words(const uint8_t* tile, int rows_t, int lane, int rg,
                                                TileWords<kSteps>& w) {
  static_assert(quant::plane0_bits(B) == 2 && quant::plane1_bits(B) <= 1, "2- and 3-bit tiles only");
  constexpr int P1 = quant::plane1_bits(B);
  const uint64_t b0 = quant::tile_plane_bytes(rows_t, 4, 2), b1 = quant::tile_plane_bytes(rows_t, 4, P1);
  const auto* p0 = reinterpret_cast<const uint32_t*>(tile);
  const auto* p1 = reinterpret_cast<const uint32_t*>(tile + b0);
  const auto* sc = reinterpret_cast<const uint32_t*>(tile + b0 + b1);
  const int u = lane & 3;
  static_for<kSteps>([&](auto J) {
    constexpr int j = J.value;
    const int r = min(8 * (rg * kSteps + j) + (lane >> 2), rows_t - 1);
    const uint2 v = ld_stream8(p0 + (r * 4 + u) * 2);
    w[4 * j] = v.x, w[4 * j + 1] = v.y;
    w[4 * j + 2] = P1 ? ld_stream4(p1 + r * 4 + u) : 0u;
    w[4 * j + 3] = ld_stream4(sc + r);
  });
}

// A 2- or 3-bit tile on the words that load_tile_words read while the previous tile computed.
template <int B, int kSteps>
__device__ __forceinline__ void dot_tile_words(const TileWords<kSteps>& w, int rows_t, int lane, int rg,
                                               const uint8_t* xq, const float* meta, float (&y)[kSteps]) {
  dot_tile<B, kSteps>(rows_t, lane, rg, xq, meta, [&](auto J, int, auto K, auto& v) {
    constexpr int j = J.value;
    if constexpr (K.value == 0) v[0] = w[4 * j], v[1] = w[4 * j + 1];
    if constexpr (K.value == 1) v[0] = w[4 * j + 2];
    if constexpr (K.value == 2) v[0] = w[4 * j + 3];
  }, y);
}

// An f16 tile (rows_t x 128 halves; the quantizer keeps a few exact): f32 products with x's f16.
template <int kSteps>
__device__ __forceinline__ void dp4a_f16_tile(const uint8_t* tile, int rows_t, int lane, int rg, const uint16_t* xh,
                                              float (&y)[kSteps]) {
  const int u = lane & 3;
  float2 x[16];
  static_for<4>([&](auto V) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(xh + u * 32) + V.value);
    x[4 * V.value] = __half22float2(as_half2(v.x)), x[4 * V.value + 1] = __half22float2(as_half2(v.y));
    x[4 * V.value + 2] = __half22float2(as_half2(v.z)), x[4 * V.value + 3] = __half22float2(as_half2(v.w));
  });
  static_for<kSteps>([&](auto J) {
    const int row = 8 * (rg * kSteps + J.value) + (lane >> 2);
    if (row >= rows_t) return;
    const uint8_t* p = tile + (size_t(row) * 4 + size_t(u)) * 64;
    float s = 0.0f;
    static_for<4>([&](auto V) {
      const uint4 w = ld_stream16(p + 16 * V.value);
      const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
      static_for<4>([&](auto K) {
        const float2 f = __half22float2(as_half2(ws[K.value]));
        s = fmaf(f.x, x[4 * V.value + K.value].x, fmaf(f.y, x[4 * V.value + K.value].y, s));
      });
    });
    y[J.value] += s;
  });
}

// The RMSNorm fold's inputs that the finish reads (launch.h), copied to shared memory by cp.async
// early on so that the finish does not wait on them: the producer's norm weights of its 64 rows
// (constant: before the wait), the consumer's sums of squares (after it).
constexpr int kFoldMaxSums = 512;  // widths up to 16384 (CudaBackend::norm_fold_candidate)
struct FoldStage {
  alignas(16) uint32_t w[64];  // 64 weights of 4 or 2 bytes
  double ss[kFoldMaxSums];
};

__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
  const auto d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async8(void* dst, const void* src) {
  const auto d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit_wait_all() {
  asm volatile("cp.async.commit_group;\ncp.async.wait_all;" ::: "memory");
}

__device__ __forceinline__ void fold_stage_weights(const TiledMmaArgs& a, int64_t row0, FoldStage& st) {
  if (!a.norm_w) return;
  const int64_t esize = a.norm_wtype == int64_t(WeightType::f32) ? 4 : 2;
  if (threadIdx.x < 16 * esize)
    cp_async4(st.w + threadIdx.x, static_cast<const uint8_t*>(a.norm_w) + row0 * esize + threadIdx.x * 4);
}
__device__ __forceinline__ void fold_stage_sums(const TiledMmaArgs& a, FoldStage& st) {
  if (!a.ss_in) return;
  for (int64_t i = threadIdx.x; i < a.ss_count; i += blockDim.x) cp_async8(st.ss + i, a.ss_in + i);
}

// The swiglu fold's finish (launch.h swi_*), by warps 0 and 1 of a strip's finishing block once
// its rows of y are stored: the second of strip i's two blocks (gate's, up's) to get here forms
// swiglu of both for the 64 rows and down's digits of it. The counter hand-off orders the first
// block's stores before the second's loads, as finish_rows's split-K hand-off does.
__device__ void swiglu_pair(const TiledMmaArgs& a, int64_t strip, int64_t row0, int rows_t) {
  __shared__ uint32_t second;
  asm volatile("bar.sync 1, 64;" ::: "memory");
  if (threadIdx.x == 0) {
    __threadfence();
    second = atomicAdd(a.swi_counters + strip, 1u) == 1u;
  }
  asm volatile("bar.sync 1, 64;" ::: "memory");
  if (!second) return;
  __threadfence();
  const int t = threadIdx.x;
  const int64_t row = row0 + t;
  float v = 0.0f;
  if (t < rows_t) {
    v = silu_times(__ldcg(a.swi_gate + row), __ldcg(a.swi_up + row));
    a.swi_out[row] = v;
  }
  store_converted(nullptr, a.swi_xq, a.swi_meta, row, v);
  if (t == 0) a.swi_counters[strip] = 0;  // ready for the next launch
}

// The strip's final sums to y: thread t < 64 of the one block that finishes the strip holds row
// row0 + t's sum s (0 past rows_t), and warps 0 and 1 call this whole. inv: 1 for a plain
// matvec, the consumer's 1 / rms with the RMSNorm fold (launch.h). The producer's side of the
// fold: h = y w to norm_h and as digits (xq_store) to xq_out, and per warp the sum of y^2 over
// its 32 rows to ss_out (two per strip), in double as rms_inverse sums.
__device__ void store_rows(const TiledMmaArgs& a, int64_t row0, int rows_t, float s, float inv,
                           const FoldStage& st) {
  const int t = threadIdx.x;
  const bool valid = t < rows_t;
  const int64_t row = row0 + t;
  float v = 0.0f;
  if (valid) {
    float* p = a.y + row;
    v = a.accumulate ? *p + s * inv : s * inv;
    *p = v;
  }
  if (a.swi_out) swiglu_pair(a, row0 / 64, row0, rows_t);
  if (!a.norm_w) return;
  double sq = double(v) * double(v);
  for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
  if (t % 32 == 0) a.ss_out[row0 / 32 + t / 32] = sq;
  const float h = valid ? v * load_weight(st.w, a.norm_wtype, t) : 0.0f;
  if (valid) a.norm_h[row] = h;
  xq_store(a.xq_out, a.xq_meta_out, row, h);
}

// The consumer's side of the RMSNorm fold, in every block (all threads): 1 / rms of the
// producer's y from its per-warp sums of squares (added in order, so every block forms the same
// value), and the block's share of norm_h scaled by it. Returns 1 without the fold.
__device__ float fold_consumer(const TiledMmaArgs& a, const FoldStage& st) {
  if (!a.ss_in) return 1.0f;
  __shared__ float inv;
  if (threadIdx.x < 32) {
    double s = 0;
    for (int64_t i = threadIdx.x; i < a.ss_count; i += 32) s += st.ss[i];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x == 0) inv = float(1.0 / sqrt(s / double(a.norm_width) + a.norm_eps));
  }
  __syncthreads();
  const float r = inv;
  const int64_t blocks = int64_t(gridDim.x) * gridDim.y, b = int64_t(blockIdx.y) * gridDim.x + blockIdx.x;
  const int64_t per = (a.norm_width + blocks - 1) / blocks, end = min(a.norm_width, (b + 1) * per);
  for (int64_t c = b * per + threadIdx.x; c < end; c += blockDim.x) a.norm_h[c] *= r;
  return r;
}

// The block's 64 row sums (red[warp][row], warps added in order) to y, or with split-K to the
// partial sums, of which the last block of the strip to finish adds the splits in order.
template <int kSlots>
__device__ void finish_rows(const TiledMmaArgs& a, const float (*red)[64], int64_t row0, int rows_t, int64_t bx,
                            float inv, const FoldStage& st) {
  __shared__ uint32_t last;
  const int t = threadIdx.x;
  float s = 0.0f;
  if (t < rows_t) {
    s = red[0][t];
    for (int k = 1; k < kSlots; ++k) s += red[k][t];
    if (a.splits > 1) a.partial[int64_t(blockIdx.y) * a.partial_ld + row0 + t] = s;
  }
  if (a.splits == 1) {
    if (t < 64) store_rows(a, row0, rows_t, s, inv, st);
    return;
  }
  // One fence after the barrier, as cooperative groups' grid sync does: the barrier orders the
  // block's partial writes before thread 0's fence and counter update.
  __syncthreads();
  if (t == 0) {
    __threadfence();
    last = atomicAdd(a.counters + bx, 1u) == uint32_t(a.splits - 1);
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  if (t < 64) {
    s = 0.0f;
    if (t < rows_t)
      for (int64_t k = 0; k < a.splits; ++k) s += __ldcg(a.partial + k * a.partial_ld + row0 + t);
    store_rows(a, row0, rows_t, s, inv, st);
  }
  if (t == 0) a.counters[bx] = 0;  // ready for the next launch
}

// finish_rows for a launch whose splits (grid y) form one cluster per strip: each block's sums
// in its shared memory, then block 0 of the cluster adds the splits' in split order, as the
// last block does above - the same sums in the same order, without the partials' round trip
// through L2, the fence and the counter. The second barrier keeps every block's shared memory
// alive until block 0 has read it.
template <int kSlots>
__device__ void finish_rows_cluster(const TiledMmaArgs& a, const float (*red)[64], int64_t row0, int rows_t,
                                    float inv, const FoldStage& st) {
  namespace cg = cooperative_groups;
  __shared__ float block_sum[64];
  const int t = threadIdx.x;
  if (t < 64) {
    float s = red[0][t];
    for (int k = 1; k < kSlots; ++k) s += red[k][t];
    block_sum[t] = s;
  }
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  if (cluster.block_rank() == 0 && t < 64) {
    float s = 0.0f;
    if (t < rows_t)
      for (int k = 0; k < int(a.splits); ++k) s += *cluster.map_shared_rank(block_sum + t, k);
    store_rows(a, row0, rows_t, s, inv, st);
  }
  cluster.sync();
}

template <int kSteps>
__global__ void __launch_bounds__(128) tiled_dp4a_kernel(const TiledMmaArgs g) {
  constexpr int kGroups = 8 / kSteps;               // warps per 64-row strip of a chunk
  constexpr int kSlots = kWideWarps / kGroups;      // chunks per block
  allow_next_grid();
  int64_t bx = 0;
  const TiledMmaArgs a = group_member(g, bx);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int rg = warp % kGroups, slot = warp / kGroups;
  const int64_t row0 = bx * 64;
  const int rows_t = int(min(int64_t(64), a.t.rows - row0));
  const int64_t tc0 = min(a.t.tiles_c, (int64_t(blockIdx.y) * kSlots + slot) * a.tiles_per_split);
  const int ntiles = int(min(a.t.tiles_c, tc0 + a.tiles_per_split) - tc0);
  const int64_t first = bx * a.t.tiles_c + tc0;
  // Lane i holds tile i's header (ntiles <= kTiledMmaMaxTilesPerWarp). (A bulk L2 prefetch of
  // the chunk's tiles here, before the wait, was slower on large matrices: run 19.)
  const int my_bits = lane < ntiles ? int(__ldg(a.t.bits + first + lane)) : 0;
  const uint32_t my_o16 = lane < ntiles ? __ldg(a.t.offs16 + first + lane) : 0;
  TileWords<kSteps> next;
  auto prefetch = [&](int i) {  // all lanes: the header shuffles are collective
    const int b = __shfl_sync(0xffffffffu, my_bits, i & 31);
    const uint8_t* tile = a.t.data + size_t(__shfl_sync(0xffffffffu, my_o16, i & 31)) * 16;
    if (i >= ntiles) return;
    if (b == 2) load_tile_words<2, kSteps>(tile, rows_t, lane, rg, next);
    if (b == 3) load_tile_words<3, kSteps>(tile, rows_t, lane, rg, next);
  };
  __shared__ FoldStage fold;
  fold_stage_weights(a, row0, fold);
  prefetch(0);  // weights: no earlier kernel writes them
  wait_prior_grid();  // x and the split-K scratch come from earlier kernels
  fold_stage_sums(a, fold);
  float y[kSteps] = {};
  for (int i = 0; i < ntiles; ++i) {
    const int b = __shfl_sync(0xffffffffu, my_bits, i);
    const uint8_t* tile = a.t.data + size_t(__shfl_sync(0xffffffffu, my_o16, i)) * 16;
    const int64_t tc = tc0 + i;
    const uint8_t* xq = a.xq + tc * kXqTileBytes;
    const float* meta = a.xq_meta + tc * kXqMetaFloats;
    TileWords<kSteps> cur;
    static_for<4 * kSteps>([&](auto K) { cur[K.value] = next[K.value]; });
    prefetch(i + 1);
    if (b == 2) {
      dot_tile_words<2, kSteps>(cur, rows_t, lane, rg, xq, meta, y);
    } else if (b == 3) {
      dot_tile_words<3, kSteps>(cur, rows_t, lane, rg, xq, meta, y);
    } else {
      mma::dispatch_bits(b, [&](auto B) {
        constexpr int kB = decltype(B)::value;
        if constexpr (kB == 16)
          dp4a_f16_tile<kSteps>(tile, rows_t, lane, rg, a.x_half + tc * 128, y);
        else if constexpr (!prefetched(kB))
          dp4a_tile<kB, kSteps>(tile, rows_t, lane, rg, xq, meta, y);
      });
    }
  }
  __shared__ float red[kSlots][64];
  static_for<kSteps>([&](auto J) {
    float v = y[J.value];
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    v += __shfl_xor_sync(0xffffffffu, v, 2);
    if ((lane & 3) == 0) red[slot][8 * (rg * kSteps + J.value) + (lane >> 2)] = v;
  });
  cp_async_commit_wait_all();  // the fold's staged inputs, visible after the barrier
  __syncthreads();
  const float inv = fold_consumer(a, fold);
  if (a.cluster)
    finish_rows_cluster<kSlots>(a, red, row0, rows_t, inv, fold);
  else
    finish_rows<kSlots>(a, red, row0, rows_t, bx, inv, fold);
}

}  // namespace

void launch_tiled_dp4a(const TiledMmaArgs& a, const ExecContext& c) {
  int64_t blocks = (a.t.rows + 63) / 64;
  if (a.group > 1) {
    const TiledMmaMember& m = a.members[a.group - 1];
    blocks = m.block0 + (m.t.rows + 63) / 64;
  }
  const dim3 grid(unsigned(blocks), unsigned(a.splits)), block(32 * kWideWarps);
  const unsigned cluster_y = a.cluster ? unsigned(a.splits) : 1u;
  switch (a.dp4a_steps) {
    case 8: launch_pdl_cluster(tiled_dp4a_kernel<8>, grid, block, 0, c, cluster_y, a); break;
    case 4: launch_pdl_cluster(tiled_dp4a_kernel<4>, grid, block, 0, c, cluster_y, a); break;
    default: launch_pdl_cluster(tiled_dp4a_kernel<2>, grid, block, 0, c, cluster_y, a); break;
  }
  CUDA_CHECK_LAUNCH();
}

int tiled_dp4a_blocks_per_sm(int64_t steps) {
  int blocks = 0;
  auto kernel = steps == 8 ? tiled_dp4a_kernel<8> : steps == 4 ? tiled_dp4a_kernel<4> : tiled_dp4a_kernel<2>;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, 32 * kWideWarps, 0));
  return blocks;
}

}  // namespace sbits::kernels::cuda
