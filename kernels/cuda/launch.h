// Kernel launchers of the CUDA backend and their argument structs.
//
// Each struct holds everything its launch depends on, in 8-byte fields (no padding), because
// the op queue compares argument bytes to decide whether a recorded sequence equals a captured
// graph (device_state.h). Host-varying values (ids, positions) are never fields: they are read
// on the device from staged arrays.
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cuda/device_state.h"

namespace sbits::kernels::cuda {

// A tiled weight on the device (kernels/quant/tiled.h TiledDesc with device pointers).
struct TiledDev {
  const uint8_t* data;       // tensor bytes (tile offsets are relative to this)
  const uint8_t* bits;       // [tiles_r * tiles_c]
  const uint64_t* offsets;   // [tiles_r * tiles_c]
  // [tiles_r * tiles_c + 1] offsets / 16, the last one the tensor's size: tiles lie in index
  // order, so tile i spans [offs16[i], offs16[i + 1]) * 16. Null when they do not fit 32 bits.
  const uint32_t* offs16;
  int64_t rows, cols, tile_rows, tile_cols, group, tiles_r, tiles_c;
};

struct EmbedArgs {
  const void* table;  // dense tables
  int64_t type;       // WeightType
  int64_t cols;
  const int32_t* ids;  // staged
  int64_t n;
  float* out;
  TiledDev tiled;  // type == tiled
};

struct RmsnormArgs {
  const float* x;
  const void* w;
  int64_t wtype, width, n;
  double eps;
  float* out;
};

struct RopeArgs {
  float* x;
  const RowInfo* rows;  // staged
  int64_t n, n_heads, head_dim, neox;
  double theta;
};

struct KvStoreArgs {
  void* k_cache;
  void* v_cache;
  const float* k;
  const float* v;
  const RowInfo* rows;  // staged
  int64_t n, layer, n_slots, n_ctx, n_kv_heads, head_dim, f16;
};

// rope of q and of k, then k and v into the cache (rows shared; k.x is the k buffer, kv.k the same).
struct RopeStoreArgs {
  RopeArgs q, k;
  KvStoreArgs kv;
};

// Splits of one attention launch: at most this many (attention.cu keeps one weight per split
// in shared memory for the merge).
constexpr int64_t kAttentionMaxSplits = 512;

struct AttentionArgs {
  const float* q;
  const void* k_cache;
  const void* v_cache;
  const RowInfo* rows;  // staged
  float* out;
  float* partial;  // [n][n_heads][splits][head_dim + 2] when splits > 1
  uint32_t* counters;  // [n][head blocks] when splits > 1, zero between launches
  int64_t n, layer, n_slots, n_ctx, n_heads, n_kv_heads, head_dim, f16;
  int64_t splits, chunk;  // positions [s * chunk, (s + 1) * chunk) go to split s
  int64_t adaptive;       // decode: chunk is the smallest; attention.cu row_chunk picks a row's
  // One row (n = 1), head_dim % 32 == 0: also out's f16 copy (x_half, n_heads * head_dim
  // columns) and variant 6's digits (xq, xq_meta), as convert_x would make them for wo.
  uint16_t* x_half;
  uint8_t* xq;
  float* xq_meta;
};

struct SwigluArgs {
  const float* gate;
  const float* up;
  float* out;
  int64_t count;
};

struct AddArgs {
  float* x;
  const float* y;
  int64_t count;
};

struct GetRowsArgs {
  const float* x;
  const int32_t* src_rows;  // staged
  float* out;
  int64_t n, width;
};

struct CopyArgs {
  void* dst;
  const void* src;
  int64_t bytes;
};

// x [n, cols] f32 -> out [n, ld] f16 (or bf16), columns cols..ld zero; with sums != null also,
// per 128 columns t and row j < 8 (zero for j >= n) of the f16 values x:
//   sums[t * 32 + j]          = sum_c x[c]
//   sums[t * 32 + 8 * k + j]  = sum_c 2^(10 - p(k, c)) x[c], k = 1, 2, 3 for plane-0 widths
//                               2, 4, 8: the offsets variant 4's decode leaves in (tiled_mma.cuh)
constexpr int kXSumStride = 32;
// With xq != null also row 0 of x in variant 6's integer form (tiled_dp4a.cu): per 128 columns
// t, kXqTileBytes of int8 digits at xq + t * kXqTileBytes and kXqMetaFloats floats at
// xq_meta + t * kXqMetaFloats.
constexpr int64_t kXqTileBytes = 1024;
constexpr int64_t kXqMetaFloats = 8;
struct ConvertXArgs {
  const float* x;
  void* out;
  float* sums;
  int64_t n, cols, ld, bf16;
  uint8_t* xq;
  float* xq_meta;
};

// An rmsnorm or swiglu whose output is the x of the next tiled matvec, fused with that x's
// conversion (cuda_fuse.cpp): one launch writes the op's f32 output and, as convert_x would
// from it, the f16 copy and sums. conv.x is the op's output; conv.n x conv.cols its shape.
constexpr int64_t kFusedConvertMaxLd = 16384;  // rmsnorm_convert keeps per-tile sums in shared memory
struct RmsnormConvertArgs {
  RmsnormArgs norm;
  ConvertXArgs conv;
};
struct SwigluConvertArgs {
  SwigluArgs swiglu;
  ConvertXArgs conv;
};

struct DenseMatvecArgs {
  const void* w;
  int64_t type, rows, cols;
  const float* x;
  float* y;
  int64_t n, accumulate;
};

// y[n, ldy] (+)= x[n, k] W^T through cuBLAS. type: f32 (x f32) or f16/bf16 (x in that type).
struct GemmArgs {
  const void* w;
  int64_t type, rows, cols, ldw;
  const void* x;
  int64_t ldx;
  float* y;
  int64_t ldy, n, accumulate;
};

// top_k (topk.cu): ids and vals are [n][k] device arrays; 1 <= k <= min(width, kMaxTopK).
// blocks > 1: each row's columns in blocks of per_block, whose k candidates go to cand_v
// (value, NaN as -inf) and cand_i ([n][blocks][k]); counters: one per row, zero between launches.
struct TopKArgs {
  const float* logits;  // [n][width]
  int32_t* ids;
  float* vals;
  int64_t n, width, k;
  int64_t blocks, per_block;
  float* cand_v;
  int32_t* cand_i;
  uint32_t* counters;
};

// One weight of a grouped matvec launch (TiledMmaArgs::group): its tiles, output, and the
// first block row of grid x that is its.
constexpr int kTiledMmaMaxGroup = 3;  // q, k, v (gate, up: 2)
struct TiledMmaMember {
  TiledDev t;
  float* y;
  int64_t accumulate, block0;
};

// The tensor-core tiled matvec (tiled_mma.cu); see tiled_mma.cuh for the layout it requires.
struct TiledMmaArgs {
  TiledDev t;
  const uint16_t* x_half;  // [n][ld] f16, zero-padded to 128 * tiles_c columns
  const float* x_sums;     // [tiles_c][kXSumStride]: per 128 columns, sums of x_half (ConvertXArgs)
  int64_t ld, n;
  float* y;
  int64_t accumulate;
  int64_t tiles_per_split, splits;
  float* partial;      // [splits][n][rows] when splits > 1
  uint32_t* counters;  // one per block row, zero between launches
  int64_t variant;
  // Variant 4: each warp's ring of `stages` shared-memory slots of slot_bytes (the largest tile
  // of the weight); smem_bytes in all, for the block's kWideWarps warps and their barriers.
  int64_t stages, slot_bytes, smem_bytes;
  // Row stride of `partial` (t.rows, or for a group the group's block rows x 64).
  int64_t partial_ld;
  // Variants 4 and 5: group > 1 weights that read the same x (equal cols) in one launch, one
  // grid over all their block rows (members[0] repeats t, y, accumulate). Each member's
  // split-K partials start at row block0 * 64 of `partial`, its counters at counters + block0;
  // slot_bytes is the members' largest.
  int64_t group;
  TiledMmaMember members[kTiledMmaMaxGroup];
  // Variant 6 (n = 1): x as ConvertXArgs::xq and xq_meta; rows per lane per tile (2, 4 or 8:
  // a warp covers 8 * dp4a_steps rows of a strip, a block 4 / (8 / dp4a_steps) chunks).
  const uint8_t* xq;
  const float* xq_meta;
  int64_t dp4a_steps;
  // Variant 6 with 1 < splits <= kSplitKClusterMax: the splits of a strip are one thread-block
  // cluster and add their sums through distributed shared memory (partial and counters unused).
  int64_t cluster;
  // Variant 6, an RMSNorm between two matvecs folded into both (cuda_fuse.cpp, "the RMSNorm fold").
  // The producer (accumulate: y is the residual x it updates) also writes, per row of y, h = y w
  // (the norm's weight, not yet divided by the rms) to norm_h, the digits of h to xq_out /
  // xq_meta_out for the consumer, and each strip's sum of y^2 to ss_out[strip]. The consumer
  // reads those digits as its x, multiplies its results by 1 / rms formed from ss_in[0 ..
  // ss_count) (width norm_width, norm_eps), and scales its slice of norm_h in place, so that h
  // holds the norm's output once it has run.
  const void* norm_w;
  int64_t norm_wtype;
  float* norm_h;
  uint8_t* xq_out;
  float* xq_meta_out;
  double* ss_out;
  const double* ss_in;
  int64_t ss_count, norm_width;
  double norm_eps;
  // Variant 6, swiglu folded into a gate / up group (cuda_fuse.cpp): of the two strips i (gate's,
  // up's), the finishing block of the second to finish (swi_counters[i] counts them) writes
  // swi_out = silu(gate) up for their 64 rows and the digits of its f16 value to swi_xq /
  // swi_meta (down's x, as swiglu_convert makes them).
  const float* swi_gate;
  const float* swi_up;
  float* swi_out;
  uint8_t* swi_xq;
  float* swi_meta;
  uint32_t* swi_counters;
};
constexpr int64_t kSplitKClusterMax = 8;  // the portable cluster size

// Any tiled layout, n <= 8 rows, f32 x: one block per output row, the reference dequantization.
struct TiledGenericArgs {
  TiledDev t;
  const float* x;
  float* y;
  int64_t n, accumulate;
};

// Rows [row0, row0 + nrows) of a tiled weight as f16: out[(r - row0) * cols + c].
struct DequantArgs {
  TiledDev t;
  uint16_t* out;
  int64_t row0, nrows;
};

void launch_embed(const EmbedArgs& a, const ExecContext& c);
void launch_rmsnorm(const RmsnormArgs& a, const ExecContext& c);
void launch_rope(const RopeArgs& a, const ExecContext& c);
void launch_kv_store(const KvStoreArgs& a, const ExecContext& c);
void launch_rope_store(const RopeStoreArgs& a, const ExecContext& c);
void launch_attention(const AttentionArgs& a, const ExecContext& c);
// Prefill attention (attention_prefill.cu): n > 8 rows of one slot, head_dim 64 or 128.
bool attention_prefill_fits(int64_t head_dim);
void launch_attention_prefill(const AttentionArgs& a, const ExecContext& c);
void launch_swiglu(const SwigluArgs& a, const ExecContext& c);
void launch_add(const AddArgs& a, const ExecContext& c);
void launch_get_rows(const GetRowsArgs& a, const ExecContext& c);
void launch_copy(const CopyArgs& a, const ExecContext& c);
void launch_convert_x(const ConvertXArgs& a, const ExecContext& c);
void launch_rmsnorm_convert(const RmsnormConvertArgs& a, const ExecContext& c);
void launch_swiglu_convert(const SwigluConvertArgs& a, const ExecContext& c);
void launch_dense_matvec(const DenseMatvecArgs& a, const ExecContext& c);
void launch_gemm(const GemmArgs& a, const ExecContext& c);
void launch_top_k(const TopKArgs& a, const ExecContext& c);
void launch_tiled_mma(const TiledMmaArgs& a, const ExecContext& c);
void launch_tiled_generic(const TiledGenericArgs& a, const ExecContext& c);
void launch_dequant(const DequantArgs& a, const ExecContext& c);

// Largest head_dim attention takes.
int attention_max_head_dim();
// Tiled-mma variants (tiled_mma.cu). Variant 0 needs tile_rows % 16 == 0 and has blocks of 16
// rows x 4 tile-column chunks; 1..3 need tile_rows == 64 and have blocks of one tile strip x
// one chunk; 4 (sm_90) needs tile_rows == 64 and has blocks of one tile strip x kWideWarps
// chunks, a warp each (5 too). A chunk is tiles_per_split (at most kTiledMmaMaxTilesPerWarp) tile columns; each
// block row needs one split-K counter.
// 6 (any sm_80+, n = 1 only, tile_rows == 64, cols % 128 == 0, offs16): integer dot products
// on x in two int8 digits (tiled_dp4a.cu); other launches of a variant-6 backend take 5 (sm_90)
// or 2. With no variant forced (SBITS_CUDA_MMA_VARIANT unset) n = 1 matvecs on weights of at
// least 2048 columns take 6, the rest 5 (sm_90) or 2 (cuda_matmul.cpp tiled_variant).
constexpr int kTiledMmaVariants = 7;
constexpr int kTiledDp4aVariant = 6;
constexpr int kWideWarps = 4;  // variant 4: warps per block, each its own chunk of tile columns
constexpr int kTiledMmaMaxTilesPerWarp = 31;  // lane 31 holds the end of the last tile
constexpr int tiled_mma_block_rows(int64_t variant) { return variant == 0 ? 16 : 64; }
// Variants 2 and 3 also need TiledDev::offs16.
constexpr bool tiled_mma_needs_offs16(int64_t variant) { return variant >= 2; }
constexpr int tiled_mma_chunks_per_block(int64_t variant) { return variant == 0 ? 4 : variant >= 4 ? kWideWarps : 1; }
// Variants 4 and 5 (sm_90 only: bulk copies on mbarriers): sets the kernel's shared-memory limit once
// and returns how many blocks of smem_bytes fit on a multiprocessor.
int tiled_mma_wide_blocks_per_sm(int64_t smem_bytes);
// Variant 6's resident blocks (of 4 warps) per multiprocessor, for dp4a_steps rows per lane.
int tiled_dp4a_blocks_per_sm(int64_t steps);
constexpr int tiled_dp4a_chunks_per_block(int64_t steps) { return int(kWideWarps / (8 / steps)); }
void launch_tiled_dp4a(const TiledMmaArgs& a, const ExecContext& c);
// Variant 4's shared memory for `stages` slots of slot_bytes per warp.
constexpr int64_t tiled_mma_wide_smem(int64_t stages, int64_t slot_bytes) {
  return kWideWarps * stages * (slot_bytes + 8);
}

// Rows of x one dense/tiled matvec launch takes (more go through cuBLAS).
constexpr int kMatvecMaxRows = 8;

// The adapter that lets the op queue call a launcher: OpQueue::push(run<A, launch_x>, args).
template <class A, void (*F)(const A&, const ExecContext&)>
void run(const void* args, const ExecContext& c) {
  F(*static_cast<const A*>(args), c);
}

}  // namespace sbits::kernels::cuda
