// The op interface that every compute backend (cpu/, cuda/, vulkan/) implements.
//
// The engine writes the model math once against this interface; a backend owns the memory
// its ops touch (weights, activations, KV cache) and may run ops asynchronously, in order,
// until synchronize() or read() returns.
//
// Conventions shared by every op:
//  - Activations are f32, row-major [n_rows, width]. One row is one token of one sequence.
//  - A batch of rows may mix sequences: row i belongs to KV-cache slot rows[i].slot at
//    position rows[i].pos. Prefill of one prompt is rows of one slot with increasing
//    positions; batched decode is one row per slot. The same ops serve both.
//  - Weights are [rows = out_features, cols = in_features] row-major, as Hugging Face
//    stores nn.Linear. matmul computes y[r, o] = sum_i x[r, i] * W[o, i].
//  - Failures throw sbits::kernels::KernelError with context; nothing aborts.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace sbits::kernels {

class KernelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace quant {
struct TiledDesc;  // kernels/quant/tiled.h
}

// Element types and layouts a weight can have. Quantized layouts join this list.
//  tiled: R x C tiles of 2..8-bit codes or f16, one bitwidth per tile (formats/SBITS.md
//         "Layout 16"); HostWeight::tiled describes the tiles.
enum class WeightType : uint32_t { f32 = 0, f16 = 1, bf16 = 2, tiled = 3 };

const char* weight_type_name(WeightType t);

// A weight as it lies in host memory (for example inside an mmapped .sbits file). The bytes
// must stay valid for as long as the uploaded Weight lives: the CPU backend uses them in
// place, GPU backends copy them.
struct HostWeight {
  WeightType type = WeightType::f32;
  int64_t rows = 0;  // 1-D tensors (norm weights) have rows = 1
  int64_t cols = 0;
  const void* data = nullptr;
  size_t bytes = 0;
  // type == tiled: the parsed tile grid (tile table, offsets; data == this->data). upload()
  // copies what it needs, so the description may be temporary; the bytes must still outlive
  // the Weight.
  const quant::TiledDesc* tiled = nullptr;
};

class Weight {
 public:
  virtual ~Weight() = default;
  WeightType type = WeightType::f32;
  int64_t rows = 0;
  int64_t cols = 0;
};

// A device-resident f32 array.
class Buffer {
 public:
  virtual ~Buffer() = default;
  size_t count = 0;  // number of floats
};

enum class KvType : uint32_t { f16 = 0, f32 = 1 };

struct KvCacheDesc {
  int n_layers = 0;
  int n_slots = 1;     // independent sequences
  int n_ctx = 0;       // positions per slot
  int n_kv_heads = 0;
  int head_dim = 0;
  KvType type = KvType::f16;
};

class KvCache {
 public:
  virtual ~KvCache() = default;
  KvCacheDesc desc;
  virtual size_t bytes() const = 0;
};

struct RowInfo {
  int32_t slot = 0;
  int32_t pos = 0;
};

// How rotary embeddings pair the dimensions of a head.
//  neox:        pairs (i, i + head_dim/2)  (Hugging Face's rotate_half)
//  interleaved: pairs (2i, 2i + 1)         (Meta's original code, llama2.c)
// Both use frequency theta^(-2i/head_dim) for pair i.
enum class RopeStyle : uint32_t { neox = 0, interleaved = 1 };

struct AttentionShape {
  int n_heads = 0;
  int n_kv_heads = 0;  // n_heads % n_kv_heads == 0 (grouped-query attention)
  int head_dim = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  virtual std::string device_description() const = 0;
  // Prompt rows per forward pass that a session uses when not told: a GPU fills the device and
  // spreads a pass's fixed costs (launches, dequantizing every weight for the GEMMs) over its
  // rows only with larger chunks (H200, 7B at 2.5 bpw: 64 rows 129 / 589 tok/s of prefill on
  // Vulkan / CUDA, 512 rows 834 / 3387). Scratch memory grows with it (~0.3 MB per row for a 7B).
  virtual int preferred_prefill_rows() const { return 64; }

  // Memory.
  virtual std::unique_ptr<Weight> upload(const HostWeight& w) = 0;
  virtual std::unique_ptr<Buffer> alloc(size_t count) = 0;
  virtual void write(Buffer& dst, const float* src, size_t count, size_t offset = 0) = 0;
  virtual void read(const Buffer& src, float* dst, size_t count, size_t offset = 0) = 0;
  virtual std::unique_ptr<KvCache> create_kv_cache(const KvCacheDesc& desc) = 0;
  virtual void synchronize() = 0;

  // out[r, :] = table[ids[r], :] as f32. ids must be in [0, table.rows).
  virtual void embed(const Weight& table, const int32_t* ids, int n, Buffer& out) = 0;

  // out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w. out may alias x.
  virtual void rmsnorm(const Buffer& x, const Weight& w, float eps, int n, Buffer& out) = 0;

  // y[r, :] (=|+=) x[r, :] W^T for r < n; x is [n, w.cols], y is [n, w.rows].
  // accumulate=true fuses the residual add.
  virtual void matmul(const Weight& w, const Buffer& x, int n, Buffer& y, bool accumulate) = 0;

  // Rotates each head of x ([n, n_heads * head_dim]) in place by position rows[r].pos.
  virtual void rope(Buffer& x, int n, int n_heads, int head_dim, const RowInfo* rows, float theta,
                    RopeStyle style) = 0;

  // Stores k and v ([n, n_kv_heads * head_dim]) into the cache of `layer` at (slot, pos).
  virtual void kv_store(KvCache& cache, int layer, const Buffer& k, const Buffer& v, int n,
                        const RowInfo* rows) = 0;

  // rope(q) and rope(k) (n_heads and n_kv_heads heads of shape.head_dim), then kv_store(k, v):
  // the position-dependent work of one attention block, in one op so that a GPU backend can do
  // it in one launch. Same results and errors as the three calls, which the default makes.
  virtual void rope_and_store(Buffer& q, Buffer& k, const Buffer& v, KvCache& cache, int layer, int n,
                              const RowInfo* rows, const AttentionShape& shape, float theta, RopeStyle style) {
    rope(q, n, shape.n_heads, shape.head_dim, rows, theta, style);
    rope(k, n, shape.n_kv_heads, shape.head_dim, rows, theta, style);
    kv_store(cache, layer, k, v, n, rows);
  }

  // Causal attention: row r of q ([n, n_heads * head_dim]) attends over positions
  // 0..rows[r].pos of slot rows[r].slot in `layer` (which must already be stored), with
  // scale 1/sqrt(head_dim). out is [n, n_heads * head_dim].
  virtual void attention(const Buffer& q, const KvCache& cache, int layer, int n, const RowInfo* rows,
                         const AttentionShape& shape, Buffer& out) = 0;

  // out[i] = silu(gate[i]) * up[i] for i < count. out may alias gate.
  virtual void swiglu(const Buffer& gate, const Buffer& up, size_t count, Buffer& out) = 0;

  // x[i] += y[i] for i < count.
  virtual void add(Buffer& x, const Buffer& y, size_t count) = 0;

  // out[r, :] = x[src_rows[r], :] for r < n, rows of `width` floats.
  virtual void get_rows(const Buffer& x, const int32_t* src_rows, int n, int width, Buffer& out) = 0;

  // Selection on the device, so that only k values per row cross to the host (greedy decoding
  // is k = 1). For each row r < n of logits ([n, width]), writes the k largest values in
  // descending order to vals[r * k + j] and their column indices to ids[r * k + j]; equal
  // values keep the lower index first (the CPU sampler's tie rule). 1 <= k <= min(width,
  // kMaxTopK). Synchronous: ids and vals are host memory, valid when the call returns.
  // The default reads the rows back and selects on the host; GPU backends override it.
  static constexpr int kMaxTopK = 64;
  virtual void top_k(const Buffer& logits, int n, int width, int k, int32_t* ids, float* vals) {
    if (n < 1 || width < 1 || k < 1 || k > width || k > kMaxTopK)
      throw KernelError("top_k: n = " + std::to_string(n) + ", width = " + std::to_string(width) +
                        ", k = " + std::to_string(k) + "; expected n >= 1 and 1 <= k <= min(width, 64)");
    std::vector<float> row(static_cast<size_t>(width));
    std::vector<int32_t> idx(static_cast<size_t>(width));
    for (int r = 0; r < n; ++r) {
      read(logits, row.data(), row.size(), static_cast<size_t>(r) * static_cast<size_t>(width));
      for (int i = 0; i < width; ++i) idx[static_cast<size_t>(i)] = i;
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
        return row[static_cast<size_t>(a)] > row[static_cast<size_t>(b)] ||
               (row[static_cast<size_t>(a)] == row[static_cast<size_t>(b)] && a < b);
      });
      for (int j = 0; j < k; ++j) {
        ids[r * k + j] = idx[static_cast<size_t>(j)];
        vals[r * k + j] = row[static_cast<size_t>(idx[static_cast<size_t>(j)])];
      }
    }
  }
};

}  // namespace sbits::kernels
