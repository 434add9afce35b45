// The tensor-core tiled matvec kernels (tiled_mma.cuh has the numerics and the data layout in
// registers) and their launch. A block's warps share its rows and take consecutive ranges of
// tile columns; their sums are added in shared memory in warp order. When rows alone would not
// fill the GPU the tile columns are also split across blocks (grid y): the last block of a
// block row to finish adds the splits' partial sums in split order. Both reductions have a
// fixed order, so results do not depend on timing.
//
// Four kernels, five variants (TiledMmaArgs::variant; bench_cuda_matvec measures them):
//  0  registers (tile_rows % 16 == 0): block (x, y) owns rows [16 x, 16 x + 16) of one tile
//     strip, its warp w the tile columns of chunk (4 y + w); a warp loads 2 tiles' words
//     straight into registers before computing them; the 4 warps' sums meet in shared memory.
//  1  staged (tile_rows == 64): block (x, y) owns tile strip x, one warp per 16 rows, and the
//     tile columns of split y; each tile is copied once into shared memory for all four warps
//     (cp.async, 3 stages), so per-tile work is shared by 64 rows and up to 8 blocks fit on a
//     multiprocessor.
//  2, 3  lean: variant 1 with its per-tile overhead removed (tiled_mma_lean_kernel); 3 stages
//     and at most 64 registers (8 blocks), or 4 stages and 6 blocks.
//  4  wide (sm_90, tile_rows == 64): a warp per whole tile, bulk copies into a per-warp ring
//     (tiled_mma_wide_kernel), the HFMA2-free decode (tiled_mma.cuh code_pair_raw).
//  5  wide with the tile's four 16-row MMA blocks interleaved (wide_tile_ilp).
// A warp takes at most 32 tile columns (lane j holds the j-th tile's header).
//
// Launched as a programmatic dependent of the previous kernel (launch_pdl, when the context
// allows it): it loads tile headers and starts copying weights (which no kernel writes) before
// griddepcontrol.wait, and touches x, y and the split-K scratch only after it; and it lets
// the next kernel start as soon as all its own blocks run. Launch gaps between consecutive
// matvecs then overlap with their memory traffic.
#include "kernels/cuda/tiled_mma.cuh"

namespace sbits::kernels::cuda {

// mma::Expo's exponents; external and writable, so neither NVVM nor ptxas folds them back
// into immediates.
__device__ uint4 g_mma_expo = {25u << 10 | 25u << 26, 23u << 10 | 23u << 26, 21u << 10 | 21u << 26,
                               19u << 10 | 19u << 26};

namespace {

__device__ __forceinline__ mma::Expo make_expo() {
  const uint4 v = g_mma_expo;
  return mma::Expo{{v.x, v.y, v.z, v.w}};
}

using mma::Geometry;
using mma::TileRegs;


__device__ __forceinline__ int tile_units(const TiledDev& t, int64_t tc) {
  const int64_t cols = min(int64_t(128), t.cols - tc * 128);
  return int((cols + 31) / 32);
}

// x in MMA order for the thread's unit t of tile column tc (zero for rows g >= n).
__device__ __forceinline__ void load_x(const TiledMmaArgs& a, const Geometry& geo, int64_t tc, uint32_t (&x)[16]) {
  const bool has = geo.g < a.n;
  const uint4* p = reinterpret_cast<const uint4*>(a.x_half + geo.g * a.ld + tc * 128 + geo.t * 32);
  static_for<4>([&](auto V) {
    const uint4 v = has ? __ldg(p + V.value) : make_uint4(0, 0, 0, 0);
    x[4 * V.value] = v.x, x[4 * V.value + 1] = v.y, x[4 * V.value + 2] = v.z, x[4 * V.value + 3] = v.w;
  });
}

__device__ __forceinline__ float2 load_sums(const TiledMmaArgs& a, const Geometry& geo, int64_t tc) {
  return __ldg(reinterpret_cast<const float2*>(a.x_sums + tc * kXSumStride + 2 * geo.t));
}

__device__ __forceinline__ uint64_t load_offset(const TiledMmaArgs& a, int64_t i) {
  return __ldg(reinterpret_cast<const unsigned long long*>(a.t.offsets) + i);
}

// The block's sums (warps added in order) go to y directly with one split, else to partial
// sums of which the last block of the block row to finish makes the final ones. Rows
// row0 .. row0 + valid_rows - 1 are the block's.
template <int kWarps, int kRB>
__device__ void finish(const TiledMmaArgs& a, float (&y)[kRB][4], int64_t row0, int valid_rows, const Geometry& geo,
                       float (*red)[kRB * 4][32], int64_t bx) {
  constexpr int kRows = 16 * kRB;
  __shared__ uint32_t last;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  static_for<kRB * 4>([&](auto I) { red[warp][I.value][lane] = y[I.value / 4][I.value % 4]; });
  __syncthreads();
  const int64_t rows = a.t.rows;
  if (warp == 0) {
    static_for<kRB * 4>([&](auto I) {
      constexpr int rb = I.value / 4, q = I.value % 4;
      float s = red[0][I.value][lane];
      for (int w = 1; w < kWarps; ++w) s += red[w][I.value][lane];
      const int local = 16 * rb + geo.g + 8 * (q / 2);
      const int64_t row = row0 + local, n = 2 * geo.t + q % 2;
      if (local < valid_rows && n < a.n) {
        if (a.splits == 1) {
          float* p = a.y + n * rows + row;
          *p = a.accumulate ? *p + s : s;
        } else {
          a.partial[(int64_t(blockIdx.y) * a.n + n) * a.partial_ld + row] = s;
        }
      }
    });
  }
  if (a.splits == 1) return;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(a.counters + bx, 1u) == uint32_t(a.splits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int64_t i = threadIdx.x; i < kRows * a.n; i += blockDim.x) {
    const int64_t local = i % kRows, row = row0 + local, n = i / kRows;
    if (local >= valid_rows) continue;
    float s = 0.0f;
    for (int64_t k = 0; k < a.splits; ++k) s += __ldcg(a.partial + (k * a.n + n) * a.partial_ld + row);
    float* p = a.y + n * rows + row;
    *p = a.accumulate ? *p + s : s;
  }
  if (threadIdx.x == 0) a.counters[bx] = 0;  // ready for the next launch
}

// Variant 0. Block (x, y): rows [16 x, 16 x + 16) of one tile strip; warp w takes tile columns
// chunk (y * 4 + w). A warp loads kBatch tiles (codes, x, sums) before computing any of them,
// and the next batch's headers before computing.
template <int kBatch>
__global__ void __launch_bounds__(128) tiled_mma_regs_kernel(const TiledMmaArgs a) {
  constexpr int kWarps = 4;
  allow_next_grid();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  Geometry geo{lane >> 2, lane & 3, 0, 0, 0};
  const int64_t row0 = int64_t(blockIdx.x) * 16;
  const int64_t chunk = int64_t(blockIdx.y) * kWarps + warp;
  const int64_t tc0 = min(a.t.tiles_c, chunk * a.tiles_per_split);
  const int64_t tc1 = min(a.t.tiles_c, tc0 + a.tiles_per_split);
  const int64_t tr = row0 / a.t.tile_rows;
  geo.lr0 = int(row0 - tr * a.t.tile_rows);
  geo.rows_t = int(min(a.t.tile_rows, a.t.rows - tr * a.t.tile_rows));
  const int64_t first = tr * a.t.tiles_c;
  float y[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
  int next_bits[kBatch];
  uint64_t next_off[kBatch];
  auto headers = [&](int64_t tc) {
    static_for<kBatch>([&](auto J) {
      const int64_t t = tc + J.value;
      next_bits[J.value] = t < tc1 ? int(__ldg(a.t.bits + first + t)) : 0;
      next_off[J.value] = t < tc1 ? load_offset(a, first + t) : 0;
    });
  };
  headers(tc0);
  wait_prior_grid();
  for (int64_t tc = tc0; tc < tc1; tc += kBatch) {
    int bits[kBatch];
    uint64_t off[kBatch];
    TileRegs r[kBatch];
    uint32_t x[kBatch][16];
    float2 xs[kBatch];
    static_for<kBatch>([&](auto J) {
      constexpr int j = J.value;
      bits[j] = next_bits[j], off[j] = next_off[j];
      if (bits[j] == 0) return;
      Geometry gj = geo;
      gj.units = tile_units(a.t, tc + j);
      mma::dispatch_bits(bits[j], [&](auto B) {
        if constexpr (decltype(B)::value != 16) mma::load_codes<decltype(B)::value>(a.t.data + off[j], gj, r[j]);
      });
      load_x(a, geo, tc + j, x[j]);
      xs[j] = load_sums(a, geo, tc + j);
    });
    headers(tc + kBatch);
    static_for<kBatch>([&](auto J) {
      constexpr int j = J.value;
      if (bits[j] == 0) return;
      Geometry gj = geo;
      gj.units = tile_units(a.t, tc + j);
      float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      mma::dispatch_bits(bits[j], [&](auto B) {
        constexpr int kB = decltype(B)::value;
        if constexpr (kB == 16) {
          mma::mma_f16_tile(a.t.data + off[j], gj, x[j], c);
          static_for<4>([&](auto I) { y[0][I.value] += c[I.value]; });
        } else {
          mma::mma_codes<kB>(r[j], x[j], c);
          mma::apply_scales(c, r[j], xs[j], y[0]);
        }
      });
    });
  }
  __shared__ float red[kWarps][4][32];
  finish<kWarps, 1>(a, y, row0, int(min(int64_t(16), a.t.rows - row0)), geo, red, blockIdx.x);
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// Variants 1..3 (tile_rows == 64). Block (x, y) owns tile strip x (warp w: its rows 16 w ..
// 16 w + 15) and the tile columns of split y. The block copies each tile - one contiguous run
// of bytes - into a ring of kStages shared-memory slots with cp.async, kStages - 1 tiles
// ahead; every issue() commits one group, empty or not, so wait_group<kStages - 2> after
// issuing means "tile i has landed" for this thread, and the barrier after it for the block.
// The same barrier tells that every warp is done with the slot the next issue() refills.
constexpr int kSlotBytes = 64 * 128 + 64 * 4;  // 64 rows of 8-bit codes and their scales

// Writes a warp's 16 rows, or with split-K its partial sums, of which the last block of the
// strip to finish adds the splits in order.
__device__ void finish_strip(const TiledMmaArgs& a, const float (&y)[4], int64_t row0, int rows_t,
                             const Geometry& geo) {
  __shared__ uint32_t last;
  const int64_t rows = a.t.rows;
  static_for<4>([&](auto I) {
    const int local = geo.lr0 + geo.g + 8 * (I.value / 2);
    const int64_t row = row0 + local, n = 2 * geo.t + I.value % 2;
    if (local < rows_t && n < a.n) {
      if (a.splits == 1) {
        float* p = a.y + n * rows + row;
        *p = a.accumulate ? *p + y[I.value] : y[I.value];
      } else {
        a.partial[(int64_t(blockIdx.y) * a.n + n) * a.partial_ld + row] = y[I.value];
      }
    }
  });
  if (a.splits == 1) return;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(a.counters + blockIdx.x, 1u) == uint32_t(a.splits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int64_t i = threadIdx.x; i < 64 * a.n; i += blockDim.x) {
    const int64_t local = i % 64, row = row0 + local, n = i / 64;
    if (local >= rows_t) continue;
    float s = 0.0f;
    for (int64_t k = 0; k < a.splits; ++k) s += __ldcg(a.partial + (k * a.n + n) * a.partial_ld + row);
    float* p = a.y + n * rows + row;
    *p = a.accumulate ? *p + s : s;
  }
  if (threadIdx.x == 0) a.counters[blockIdx.x] = 0;  // ready for the next launch
}

template <int kStages, int kMinBlocks>
__global__ void __launch_bounds__(128, kMinBlocks) tiled_mma_staged_kernel(const TiledMmaArgs a) {
  extern __shared__ __align__(16) uint8_t smem[];
  allow_next_grid();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row0 = int64_t(blockIdx.x) * 64;
  const int rows_t = int(min(int64_t(64), a.t.rows - row0));
  const int64_t tc0 = min(a.t.tiles_c, int64_t(blockIdx.y) * a.tiles_per_split);
  const int ntiles = int(min(a.t.tiles_c, tc0 + a.tiles_per_split) - tc0);
  const int64_t first = int64_t(blockIdx.x) * a.t.tiles_c + tc0;
  const int my_bits = lane < ntiles ? int(__ldg(a.t.bits + first + lane)) : 0;
  const uint64_t my_off = lane < ntiles ? load_offset(a, first + lane) : 0;
  auto issue = [&](int i) {
    const int b = __shfl_sync(0xffffffffu, my_bits, i & 31);
    const uint64_t off = __shfl_sync(0xffffffffu, my_off, i & 31);
    if (i < ntiles && b != quant::kKeepF16Bits) {  // f16 tiles are read from global memory
      const int cols_t = int(min(int64_t(128), a.t.cols - (tc0 + i) * 128));
      const int bytes = int(quant::tile_bytes(rows_t, cols_t, 128, b));
      const uint8_t* src = a.t.data + off;
      uint8_t* dst = smem + (i % kStages) * kSlotBytes;
      for (int k = threadIdx.x * 16; k < bytes; k += 128 * 16) cp_async16(dst + k, src + k);
    }
    cp_async_commit();
  };
  static_for<kStages - 1>([&](auto S) { issue(S.value); });
  wait_prior_grid();  // x, its sums, y and the split-K scratch come from earlier kernels
  Geometry geo{lane >> 2, lane & 3, warp * 16, rows_t, 0};
  const bool has_rows = geo.lr0 < rows_t;  // warp-uniform
  float y[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int i = 0; i < ntiles; ++i) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    issue(i + kStages - 1);
    // x after the copies are issued: fewer live registers across issue(); other warps hide
    // the (L1 or L2) latency.
    uint32_t x[16];
    load_x(a, geo, tc0 + i, x);
    const float2 xs = load_sums(a, geo, tc0 + i);
    const int b = __shfl_sync(0xffffffffu, my_bits, i);
    const uint64_t off = __shfl_sync(0xffffffffu, my_off, i);
    if (has_rows) {
      geo.units = tile_units(a.t, tc0 + i);
      const uint8_t* slot = smem + (i % kStages) * kSlotBytes;
      float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      mma::dispatch_bits(b, [&](auto B) {
        constexpr int kB = decltype(B)::value;
        if constexpr (kB == 16) {
          mma::mma_f16_tile(a.t.data + off, geo, x, c);
          static_for<4>([&](auto I) { y[I.value] += c[I.value]; });
        } else {
          constexpr int P0 = quant::plane0_bits(kB), P1 = quant::plane1_bits(kB);
          const int w0 = ((rows_t * geo.units * 4 * P0 + 15) & ~15) / 4;  // plane sizes in words
          const int w1 = ((rows_t * geo.units * 4 * P1 + 15) & ~15) / 4;
          const auto* w = reinterpret_cast<const uint32_t*>(slot);
          TileRegs r;
          mma::load_codes<kB, true>(w, w + w0, w + w0 + w1, geo, r);
          mma::mma_codes<kB>(r, x, c);
          mma::apply_scales(c, r, xs, y);
        }
      });
    }
  }
  cp_async_wait<0>();
  finish_strip(a, y, row0, rows_t, geo);
}


// Variants 2 and 3: the staged kernel with its per-tile work cut to the bone. A tile's copy is
// the run [offs16[i], offs16[i + 1]) (no size arithmetic), x and sums advance by pointer, the
// ring slots by pointer, and codes are read without bounds checks (load_codes, kCheck).
template <int kStages, int kMinBlocks>
__global__ void __launch_bounds__(128, kMinBlocks) tiled_mma_lean_kernel(const TiledMmaArgs a) {
  extern __shared__ __align__(16) uint8_t smem[];
  allow_next_grid();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t row0 = int64_t(blockIdx.x) * 64;
  const int rows_t = int(min(int64_t(64), a.t.rows - row0));
  const int64_t tc0 = min(a.t.tiles_c, int64_t(blockIdx.y) * a.tiles_per_split);
  const int ntiles = int(min(a.t.tiles_c, tc0 + a.tiles_per_split) - tc0);
  const int64_t first = int64_t(blockIdx.x) * a.t.tiles_c + tc0;
  const int last_units = int((a.t.cols - (a.t.tiles_c - 1) * 128 + 31) / 32);
  const int64_t last_tc = a.t.tiles_c - 1 - tc0;  // index of the last tile column in this range
  const int my_bits = lane < ntiles ? int(__ldg(a.t.bits + first + lane)) : 0;
  const uint32_t my_o16 = lane <= ntiles ? __ldg(a.t.offs16 + first + lane) : 0;
  const uint8_t* data = a.t.data;
  uint8_t* const ring_end = smem + kStages * kSlotBytes;
  uint8_t* fill = smem;
  auto issue = [&](int i) {
    const int b = __shfl_sync(0xffffffffu, my_bits, i & 31);
    const uint32_t o0 = __shfl_sync(0xffffffffu, my_o16, i & 31), o1 = __shfl_sync(0xffffffffu, my_o16, (i + 1) & 31);
    if (i < ntiles && b != quant::kKeepF16Bits) {  // f16 tiles are read from global memory
      const int bytes = int(o1 - o0) * 16;
      const uint8_t* src = data + size_t(o0) * 16;
      for (int k = tid * 16; k < bytes; k += 128 * 16) cp_async16(fill + k, src + k);
    }
    cp_async_commit();
    fill = fill + kSlotBytes == ring_end ? smem : fill + kSlotBytes;
  };
  static_for<kStages - 1>([&](auto S) { issue(S.value); });
  wait_prior_grid();  // x, its sums, y and the split-K scratch come from earlier kernels
  Geometry geo{lane >> 2, lane & 3, warp * 16, rows_t, 4};
  const bool has_rows = geo.lr0 < rows_t, has_x = geo.g < a.n;  // warp-uniform / per lane
  const uint4* xp = reinterpret_cast<const uint4*>(a.x_half + geo.g * a.ld + tc0 * 128 + geo.t * 32);
  const float2* sp = reinterpret_cast<const float2*>(a.x_sums + tc0 * kXSumStride + 2 * geo.t);
  const uint8_t* slot = smem;
  float y[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int i = 0; i < ntiles; ++i, xp += 16, sp += kXSumStride / 2) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    issue(i + kStages - 1);
    const int b = __shfl_sync(0xffffffffu, my_bits, i);
    const uint32_t o0 = __shfl_sync(0xffffffffu, my_o16, i);
    if (has_rows) {
      uint32_t x[16];
      static_for<4>([&](auto V) {
        const uint4 v = has_x ? __ldg(xp + V.value) : make_uint4(0, 0, 0, 0);
        x[4 * V.value] = v.x, x[4 * V.value + 1] = v.y, x[4 * V.value + 2] = v.z, x[4 * V.value + 3] = v.w;
      });
      const float2 xs = __ldg(sp);
      geo.units = i == last_tc ? last_units : 4;
      float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      mma::dispatch_bits(b, [&](auto B) {
        constexpr int kB = decltype(B)::value;
        if constexpr (kB == 16) {
          mma::mma_f16_tile(data + size_t(o0) * 16, geo, x, c);
          static_for<4>([&](auto I) { y[I.value] += c[I.value]; });
        } else {
          constexpr int P0 = quant::plane0_bits(kB), P1 = quant::plane1_bits(kB);
          const int w0 = (rows_t * geo.units * P0 + 3) & ~3;  // plane sizes in words (16-byte padded)
          const int w1 = (rows_t * geo.units * P1 + 3) & ~3;
          const auto* w = reinterpret_cast<const uint32_t*>(slot);
          TileRegs r;
          mma::load_codes<kB, true, false>(w, w + w0, w + w0 + w1, geo, r);
          mma::mma_codes<kB>(r, x, c);
          mma::apply_scales(c, r, xs, y);
        }
      });
    }
    slot = slot + kSlotBytes == ring_end ? smem : slot + kSlotBytes;
  }
  cp_async_wait<0>();
  finish_strip(a, y, row0, rows_t, geo);
}

// Variant 4 (sm_90): one warp per whole tile. Block (x, y) owns tile strip x; its warp w the
// tile columns of chunk (kWideWarps y + w). Each warp streams its tiles - in a strip they lie
// back to back - into its own ring of `stages` shared-memory slots with one bulk copy per tile
// (cp.async.bulk, completing on the slot's mbarrier), issued by lane 0 `stages` tiles ahead.
// So per tile a warp spends a few instructions on the copy (not one cp.async per 16 bytes per
// thread), one bitwidth dispatch, one load of x, and no block barrier, for all 64 rows (four
// 16-row MMA blocks that share x); the decode is one LOP3 per code pair (code_pair_raw). The
// warps' sums meet in shared memory in warp order (finish), split-K as in the other variants.
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void mbar_init(uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(bar)) : "memory");
#endif
}
__device__ __forceinline__ void mbar_init_fence() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}
// Arrival of the slot's single producer; the phase completes when `bytes` have landed too.
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
#endif
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
#endif
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
  } while (!done);
#endif
}
// Copies `bytes` (a multiple of 16, both addresses 16-byte aligned) into shared memory. The
// proxy fence orders this warp's earlier plain reads of the slot before the copy's writes.
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(smem_addr(bar))
               : "memory");
#endif
}

// The four 16-row blocks of one staged tile of B-bit codes (rows_t valid rows).
template <int B>
__device__ __forceinline__ void wide_tile(const uint8_t* slot, const Geometry& geo, const uint32_t (&x)[16],
                                          float2 xs, const float* sums, const mma::Expo& ex, float (&y)[4][4]) {
  constexpr int P0 = quant::plane0_bits(B), P1 = quant::plane1_bits(B);
  const int w0 = (geo.rows_t * geo.units * P0 + 3) & ~3;  // plane sizes in words (16-byte padded)
  const int w1 = (geo.rows_t * geo.units * P1 + 3) & ~3;
  const auto* w = reinterpret_cast<const uint32_t*>(slot);
  const float2 off = __ldg(reinterpret_cast<const float2*>(sums + 8 * mma::offset_class(P0)));
  static_for<4>([&](auto J) {
    constexpr int j = J.value;
    if (16 * j >= geo.rows_t) return;  // warp-uniform: only in a last, shorter strip
    Geometry gj = geo;
    gj.lr0 = 16 * j;
    TileRegs r;
    mma::load_codes<B, true, false>(w, w + w0, w + w0 + w1, gj, r);
    float c[4];
    mma::init_offset(c, off);
    mma::mma_codes_raw<B>(r, x, c, ex);
    mma::apply_scales(c, r, xs, y[j]);
  });
}

// Variant 5: the same work with the four 16-row blocks interleaved - their codes loaded
// together, then MMA step s of every block before step s + 1 - so a warp has 4 (2 for 6- and
// 8-bit codes, for registers) independent MMA chains instead of one: variant 4 was latency-
// bound (ncu: an instruction every 7.2 cycles per warp, 12.8 warps per SM). Rows past rows_t
// compute on stale slot bytes (the slot holds a full tile) and are never stored.
template <int B>
__device__ __forceinline__ void wide_tile_ilp(const uint8_t* slot, const Geometry& geo, const uint32_t (&x)[16],
                                              float2 xs, const float* sums, const mma::Expo& ex, float (&y)[4][4]) {
  constexpr int P0 = quant::plane0_bits(B), P1 = quant::plane1_bits(B);
  constexpr int kGroup = P0 + P1 <= 5 ? 4 : 2;
  const int w0 = (geo.rows_t * geo.units * P0 + 3) & ~3;
  const int w1 = (geo.rows_t * geo.units * P1 + 3) & ~3;
  const auto* w = reinterpret_cast<const uint32_t*>(slot);
  const float2 off = __ldg(reinterpret_cast<const float2*>(sums + 8 * mma::offset_class(P0)));
  static_for<4 / kGroup>([&](auto G) {
    TileRegs r[kGroup];
    static_for<kGroup>([&](auto J) {
      Geometry gj = geo;
      gj.lr0 = 16 * (G.value * kGroup + J.value);
      mma::load_codes<B, true, false>(w, w + w0, w + w0 + w1, gj, r[J.value]);
    });
    float c[kGroup][4];
    static_for<kGroup>([&](auto J) { mma::init_offset(c[J.value], off); });
    static_for<8>([&](auto S) {
      constexpr int s = S.value;
      static_for<kGroup>([&](auto J) {
        const TileRegs& q = r[J.value];
        mma::mma16816(c[J.value], mma::code_pair_raw<B, 2 * s>(q.w0[0], q.w1[0], ex),
                      mma::code_pair_raw<B, 2 * s>(q.w0[1], q.w1[1], ex),
                      mma::code_pair_raw<B, 2 * s + 1>(q.w0[0], q.w1[0], ex),
                      mma::code_pair_raw<B, 2 * s + 1>(q.w0[1], q.w1[1], ex), x[2 * s], x[2 * s + 1]);
      });
    });
    static_for<kGroup>([&](auto J) { mma::apply_scales(c[J.value], r[J.value], xs, y[G.value * kGroup + J.value]); });
  });
}

__device__ __forceinline__ void wide_f16_tile(const uint8_t* tile, const Geometry& geo, const uint32_t (&x)[16],
                                              float (&y)[4][4]) {
  static_for<4>([&](auto J) {
    constexpr int j = J.value;
    if (16 * j >= geo.rows_t) return;
    Geometry gj = geo;
    gj.lr0 = 16 * j;
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    mma::mma_f16_tile(tile, gj, x, c);
    static_for<4>([&](auto I) { y[j][I.value] += c[I.value]; });
  });
}

template <bool kInterleave>
__global__ void __launch_bounds__(32 * kWideWarps, 4) tiled_mma_wide_kernel(const TiledMmaArgs g) {
  extern __shared__ __align__(128) uint8_t smem[];
  allow_next_grid();
  int64_t bx = 0;
  const TiledMmaArgs a = group_member(g, bx);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int stages = int(a.stages);
  const uint32_t slot_bytes = uint32_t(a.slot_bytes);
  const int64_t row0 = bx * 64;
  const int rows_t = int(min(int64_t(64), a.t.rows - row0));
  const int64_t tc0 = min(a.t.tiles_c, (int64_t(blockIdx.y) * kWideWarps + warp) * a.tiles_per_split);
  const int ntiles = int(min(a.t.tiles_c, tc0 + a.tiles_per_split) - tc0);
  const int64_t first = bx * a.t.tiles_c + tc0;
  const int last_units = int((a.t.cols - (a.t.tiles_c - 1) * 128 + 31) / 32);
  const int64_t last_tc = a.t.tiles_c - 1 - tc0;  // index of the last tile column in this range
  const int my_bits = lane < ntiles ? int(__ldg(a.t.bits + first + lane)) : 0;
  const uint32_t my_o16 = lane <= ntiles ? __ldg(a.t.offs16 + first + lane) : 0;
  const uint8_t* data = a.t.data;
  uint8_t* const ring = smem + size_t(warp) * size_t(stages) * slot_bytes;
  uint64_t* const bars =
      reinterpret_cast<uint64_t*>(smem + size_t(kWideWarps) * size_t(stages) * slot_bytes) + warp * stages;
  if (lane == 0) {
    for (int s = 0; s < stages; ++s) mbar_init(bars + s);
    mbar_init_fence();
  }
  __syncwarp();
  // Tile i into slot s (all lanes call it: the header shuffles are collective). An f16 tile is
  // read from global memory, its slot's phase completed by a plain arrival.
  auto issue = [&](int i, int s) {
    const int b = __shfl_sync(0xffffffffu, my_bits, i & 31);
    const uint32_t o0 = __shfl_sync(0xffffffffu, my_o16, i & 31), o1 = __shfl_sync(0xffffffffu, my_o16, (i + 1) & 31);
    if (lane != 0 || i >= ntiles) return;
    if (b == quant::kKeepF16Bits) {
      mbar_arrive(bars + s);
      return;
    }
    const uint32_t bytes = (o1 - o0) * 16;
    mbar_expect_tx(bars + s, bytes);
    bulk_copy(ring + size_t(s) * slot_bytes, data + size_t(o0) * 16, bytes, bars + s);
  };
  for (int s = 0; s < stages; ++s) issue(s, s);  // weights: no earlier kernel writes them
  wait_prior_grid();  // x, its sums, y and the split-K scratch come from earlier kernels
  Geometry geo{lane >> 2, lane & 3, 0, rows_t, 4};
  const bool has_x = geo.g < a.n;
  const uint4* xp = reinterpret_cast<const uint4*>(a.x_half + geo.g * a.ld + tc0 * 128 + geo.t * 32);
  const float* sp = a.x_sums + tc0 * kXSumStride + 2 * geo.t;
  float y[4][4] = {};
  const mma::Expo ex = make_expo();
  int s = 0;
  uint32_t phase = 0;
  for (int i = 0; i < ntiles; ++i, xp += 16, sp += kXSumStride) {
    uint32_t x[16];
    static_for<4>([&](auto V) {
      const uint4 v = has_x ? __ldg(xp + V.value) : make_uint4(0, 0, 0, 0);
      x[4 * V.value] = v.x, x[4 * V.value + 1] = v.y, x[4 * V.value + 2] = v.z, x[4 * V.value + 3] = v.w;
    });
    const float2 xs = __ldg(reinterpret_cast<const float2*>(sp));
    const int b = __shfl_sync(0xffffffffu, my_bits, i);
    const uint32_t o0 = __shfl_sync(0xffffffffu, my_o16, i);
    geo.units = i == last_tc ? last_units : 4;
    mbar_wait(bars + s, phase);
    const uint8_t* slot = ring + size_t(s) * slot_bytes;
    mma::dispatch_bits(b, [&](auto B) {
      constexpr int kB = decltype(B)::value;
      if constexpr (kB == 16)
        wide_f16_tile(data + size_t(o0) * 16, geo, x, y);
      else if constexpr (kInterleave)
        wide_tile_ilp<kB>(slot, geo, x, xs, sp, ex, y);
      else
        wide_tile<kB>(slot, geo, x, xs, sp, ex, y);
    });
    __syncwarp();  // every lane is done with slot s before it is refilled
    issue(i + stages, s);
    if (++s == stages) s = 0, phase ^= 1u;
  }
  __syncthreads();  // all warps are done with their rings: finish() reuses them for the sums
  finish<kWideWarps, 4>(a, y, row0, rows_t, geo, reinterpret_cast<float(*)[16][32]>(smem), bx);
}

template <class Kernel>
void launch(Kernel kernel, const TiledMmaArgs& a, int rows_per_block, int smem, const ExecContext& c) {
  int64_t blocks = (a.t.rows + rows_per_block - 1) / rows_per_block;
  if (a.group > 1) {  // variants 4, 5: every member's block rows (rows_per_block is 64)
    const TiledMmaMember& m = a.members[a.group - 1];
    blocks = m.block0 + (m.t.rows + rows_per_block - 1) / rows_per_block;
  }
  launch_pdl(kernel, dim3(unsigned(blocks), unsigned(a.splits)), dim3(128), size_t(smem), c, a);
}

}  // namespace

void launch_tiled_mma(const TiledMmaArgs& a, const ExecContext& c) {
  if (a.n == 0) return;
  switch (a.variant) {
    case 0: launch(tiled_mma_regs_kernel<2>, a, 16, 0, c); break;
    case 1: launch(tiled_mma_staged_kernel<3, 8>, a, 64, 3 * kSlotBytes, c); break;
    case 2: launch(tiled_mma_lean_kernel<3, 8>, a, 64, 3 * kSlotBytes, c); break;
    case 3: launch(tiled_mma_lean_kernel<4, 6>, a, 64, 4 * kSlotBytes, c); break;
    case 4: launch(tiled_mma_wide_kernel<false>, a, 64, int(a.smem_bytes), c); break;
    case 5: launch(tiled_mma_wide_kernel<true>, a, 64, int(a.smem_bytes), c); break;
    default: launch_tiled_dp4a(a, c); return;  // tiled_dp4a.cu
  }
  CUDA_CHECK_LAUNCH();
}

int tiled_mma_wide_blocks_per_sm(int64_t smem_bytes) {
  static const bool once = [] {
    int dev = 0, max_smem = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    for (auto kernel : {tiled_mma_wide_kernel<false>, tiled_mma_wide_kernel<true>}) {
      cudaFuncAttributes attr{};
      CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));  // static + dynamic <= the limit
      CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      max_smem - int(attr.sharedSizeBytes)));
    }
    return true;
  }();
  (void)once;
  int blocks = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, tiled_mma_wide_kernel<true>, 32 * kWideWarps,
                                                           size_t(smem_bytes)));
  return blocks;
}

}  // namespace sbits::kernels::cuda
