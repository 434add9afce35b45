// Recording the row-wise and element-wise ops, kv_store and attention: arguments are checked
// here, on the host, before anything is recorded (same checks and messages as the CPU
// backend); host arrays are staged (cuda_backend.h, "Execution").
#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>

#include "kernels/cuda/cuda_backend_impl.h"

namespace sbits::kernels::cuda {
namespace {

// rope's checks; the arguments without the staged rows.
RopeArgs rope_args(const char* op, CudaBuffer& xs, int n, int n_heads, int head_dim, const RowInfo* rows, float theta,
                   RopeStyle style) {
  check_rope_args(op, xs, n, n_heads, head_dim, rows, theta, style);
  auto a = zeroed<RopeArgs>();
  a.x = xs.ptr();
  a.n = n;
  a.n_heads = n_heads;
  a.head_dim = head_dim;
  a.neox = style == RopeStyle::neox;
  a.theta = theta;
  return a;
}

CudaKvCache& cuda_cache(KvCache& c, const char* op) {
  auto* k = dynamic_cast<CudaKvCache*>(&c);
  if (!k) fail(op, "the cache was not created by the CUDA backend");
  return *k;
}

}  // namespace

void CudaBackend::embed(const Weight& table, const int32_t* ids, int n, Buffer& out) {
  const char* op = "embed";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  const CudaWeight& t = cuda_weight(table, op);
  CudaBuffer& o = cuda_buffer(out, op, "out");
  check_rows_pointer(op, ids, n);
  check_count(op, "out", o, n, t.cols);
  for (int r = 0; r < n; ++r)
    if (ids[r] < 0 || ids[r] >= t.rows)
      fail(op, "ids[", r, "] = ", ids[r], " is outside the table's rows [0, ", t.rows, ")");
  if (n == 0) return;
  st_->queue->begin_op(size_t(n) * sizeof(int32_t));
  auto a = zeroed<EmbedArgs>();
  a.table = t.mem.get();
  a.type = int64_t(t.type);
  a.cols = t.cols;
  a.ids = static_cast<const int32_t*>(st_->queue->stage(ids, size_t(n) * sizeof(int32_t)));
  a.n = n;
  a.out = o.ptr();
  a.tiled = t.tiled;
  stamp(o);
  record(run<EmbedArgs, launch_embed>, a);
}

void CudaBackend::get_rows(const Buffer& x, const int32_t* src_rows, int n, int width, Buffer& out) {
  const char* op = "get_rows";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  const CudaBuffer& xs = cuda_buffer(x, op, "x");
  CudaBuffer& o = cuda_buffer(out, op, "out");
  check_get_rows_args(op, xs, src_rows, n, width, o);
  if (n == 0) return;
  st_->queue->begin_op(size_t(n) * sizeof(int32_t));
  auto a = zeroed<GetRowsArgs>();
  a.x = xs.ptr();
  a.src_rows = static_cast<const int32_t*>(st_->queue->stage(src_rows, size_t(n) * sizeof(int32_t)));
  a.out = o.ptr();
  a.n = n;
  a.width = width;
  stamp(o);
  record(run<GetRowsArgs, launch_get_rows>, a);
}

void CudaBackend::rmsnorm(const Buffer& x, const Weight& w, float eps, int n, Buffer& out) {
  const char* op = "rmsnorm";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  const CudaWeight& wt = cuda_weight(w, op);
  const CudaBuffer& xs = cuda_buffer(x, op, "x");
  CudaBuffer& o = cuda_buffer(out, op, "out");
  // cuda_fuse.cpp: the matmul that wrote x stays pending when this may fold into it.
  const bool fold = norm_fold_candidate(xs, o, wt, n);
  if (!fold) flush_pending();
  if (n < 0) fail(op, "n must be >= 0, got ", n);
  if (wt.type == WeightType::tiled) fail(op, "the weight must be f32, f16 or bf16, not tiled");
  if (wt.rows != 1) fail(op, "the weight must be 1 row (a vector), got ", wt.rows, " x ", wt.cols);
  if (!(eps >= 0.0f) || !std::isfinite(eps)) fail(op, "eps must be finite and >= 0, got ", eps);
  check_count(op, "x", xs, n, wt.cols);
  check_count(op, "out", o, n, wt.cols);
  if (n == 0) return;
  auto a = zeroed<RmsnormArgs>();
  a.x = xs.ptr();
  a.w = wt.mem.get();
  a.wtype = int64_t(wt.type);
  a.width = wt.cols;
  a.n = n;
  a.eps = eps;
  a.out = o.ptr();
  stamp(o);
  if (fold) {  // cuda_fuse.cpp: may fold into the pending matmul and the next ones
    pending_.after = PendingElem::rmsnorm;
    pending_.after_rms = a;
    pending_.after_out = &o;
    return;
  }
  if (fusing() && n <= kMatvecMaxRows) {  // cuda_fuse.cpp: may fuse with the next matmul's x
    pending_.elem = PendingElem::rmsnorm;
    pending_.rms = a;
    pending_.elem_out = &o;
    return;
  }
  st_->queue->begin_op(0);
  record(run<RmsnormArgs, launch_rmsnorm>, a);
}

void CudaBackend::rope(Buffer& x, int n, int n_heads, int head_dim, const RowInfo* rows, float theta,
                       RopeStyle style) {
  const char* op = "rope";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  CudaBuffer& xs = cuda_buffer(x, op, "x");
  auto a = rope_args(op, xs, n, n_heads, head_dim, rows, theta, style);
  if (n == 0) return;
  st_->queue->begin_op(size_t(n) * sizeof(RowInfo));
  a.rows = static_cast<const RowInfo*>(st_->queue->stage(rows, size_t(n) * sizeof(RowInfo)));
  stamp(xs);
  record(run<RopeArgs, launch_rope>, a);
}

void CudaBackend::swiglu(const Buffer& gate, const Buffer& up, size_t count, Buffer& out) {
  const char* op = "swiglu";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  const CudaBuffer& g = cuda_buffer(gate, op, "gate");
  const CudaBuffer& u = cuda_buffer(up, op, "up");
  CudaBuffer& o = cuda_buffer(out, op, "out");
  // cuda_fuse.cpp: the gate / up matmuls stay pending when this may fold into them.
  const bool fold = swiglu_fold_candidate(g, u, count);
  if (!fold) flush_pending();
  check_count(op, "gate", g, count);
  check_count(op, "up", u, count);
  check_count(op, "out", o, count);
  if (count == 0) return;
  auto a = zeroed<SwigluArgs>();
  a.gate = g.ptr();
  a.up = u.ptr();
  a.out = o.ptr();
  a.count = int64_t(count);
  stamp(o);
  if (fold) {
    pending_.after = PendingElem::swiglu;
    pending_.after_swi = a;
    pending_.after_out = &o;
    return;
  }
  if (fusing()) {  // cuda_fuse.cpp: may fuse with the next matmul's x
    pending_.elem = PendingElem::swiglu;
    pending_.swi = a;
    pending_.elem_out = &o;
    return;
  }
  st_->queue->begin_op(0);
  record(run<SwigluArgs, launch_swiglu>, a);
}

void CudaBackend::add(Buffer& x, const Buffer& y, size_t count) {
  const char* op = "add";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  CudaBuffer& xs = cuda_buffer(x, op, "x");
  const CudaBuffer& ys = cuda_buffer(y, op, "y");
  check_count(op, "x", xs, count);
  check_count(op, "y", ys, count);
  if (count == 0) return;
  st_->queue->begin_op(0);
  auto a = zeroed<AddArgs>();
  a.x = xs.ptr();
  a.y = ys.ptr();
  a.count = int64_t(count);
  stamp(xs);
  record(run<AddArgs, launch_add>, a);
}

KvStoreArgs CudaBackend::kv_store_args(const char* op, CudaKvCache& c, int layer, const Buffer& k, const Buffer& v,
                                       int n, const RowInfo* rows) {
  const KvCacheDesc& d = c.desc;
  const CudaBuffer& ks = cuda_buffer(k, op, "k");
  const CudaBuffer& vs = cuda_buffer(v, op, "v");
  check_layer(op, d, layer);
  check_cache_rows(op, d, rows, n);
  const int64_t width = int64_t(d.n_kv_heads) * d.head_dim;
  check_count(op, "k", ks, n, width);
  check_count(op, "v", vs, n, width);
  auto a = zeroed<KvStoreArgs>();
  a.k_cache = c.k.get();
  a.v_cache = c.v.get();
  a.k = ks.ptr();
  a.v = vs.ptr();
  a.n = n;
  a.layer = layer;
  a.n_slots = d.n_slots;
  a.n_ctx = d.n_ctx;
  a.n_kv_heads = d.n_kv_heads;
  a.head_dim = d.head_dim;
  a.f16 = d.type == KvType::f16;
  return a;
}

void CudaBackend::kv_store(KvCache& cache, int layer, const Buffer& k, const Buffer& v, int n, const RowInfo* rows) {
  const char* op = "kv_store";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  CudaKvCache& c = cuda_cache(cache, op);
  auto a = kv_store_args(op, c, layer, k, v, n, rows);
  if (n == 0) return;
  st_->queue->begin_op(size_t(n) * sizeof(RowInfo));
  a.rows = static_cast<const RowInfo*>(st_->queue->stage(rows, size_t(n) * sizeof(RowInfo)));
  record(run<KvStoreArgs, launch_kv_store>, a);
  for (int r = 0; r < n; ++r) c.end(layer, rows[r].slot) = std::max(c.end(layer, rows[r].slot), rows[r].pos + 1);
}

// One launch for rope(q), rope(k), kv_store: every check of the three runs before anything is
// recorded, with the three ops' own names in the messages. The kernel's threads work on q, k
// and v at once, so buffers that alias each other take the three ops in order instead.
void CudaBackend::rope_and_store(Buffer& q, Buffer& k, const Buffer& v, KvCache& cache, int layer, int n,
                                 const RowInfo* rows, const AttentionShape& shape, float theta, RopeStyle style) {
  if (&q == &k || &v == &q || &v == &k)
    return Backend::rope_and_store(q, k, v, cache, layer, n, rows, shape, theta, style);
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  CudaBuffer& qs = cuda_buffer(q, "rope", "x");
  CudaBuffer& ks = cuda_buffer(k, "rope", "x");
  auto a = zeroed<RopeStoreArgs>();
  a.q = rope_args("rope", qs, n, shape.n_heads, shape.head_dim, rows, theta, style);
  a.k = rope_args("rope", ks, n, shape.n_kv_heads, shape.head_dim, rows, theta, style);
  CudaKvCache& c = cuda_cache(cache, "kv_store");
  a.kv = kv_store_args("kv_store", c, layer, k, v, n, rows);
  if (a.kv.n_kv_heads != shape.n_kv_heads || a.kv.head_dim != shape.head_dim)
    fail("rope_and_store", "shape has n_kv_heads=", shape.n_kv_heads, " head_dim=", shape.head_dim,
         ", the cache has n_kv_heads=", a.kv.n_kv_heads, " head_dim=", a.kv.head_dim);
  if (n == 0) return;
  st_->queue->begin_op(size_t(n) * sizeof(RowInfo));
  a.q.rows = a.k.rows = a.kv.rows = static_cast<const RowInfo*>(st_->queue->stage(rows, size_t(n) * sizeof(RowInfo)));
  stamp(qs);
  stamp(ks);
  record(run<RopeStoreArgs, launch_rope_store>, a);
  for (int r = 0; r < n; ++r) c.end(layer, rows[r].slot) = std::max(c.end(layer, rows[r].slot), rows[r].pos + 1);
}

void CudaBackend::attention(const Buffer& q, const KvCache& cache, int layer, int n, const RowInfo* rows,
                            const AttentionShape& shape, Buffer& out) {
  const char* op = "attention";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  CudaKvCache& c = cuda_cache(const_cast<KvCache&>(cache), op);
  const KvCacheDesc& d = c.desc;
  const CudaBuffer& qs = cuda_buffer(q, op, "q");
  CudaBuffer& os = cuda_buffer(out, op, "out");
  check_attention_args(op, d, layer, n, rows, shape, qs, os, [&](int slot) { return c.end(layer, slot); });
  const int64_t width = int64_t(shape.n_heads) * shape.head_dim;
  // out may alias q: each warp reads its head of q before it writes that head of out.
  if (n == 0) return;
  if (n > kMatvecMaxRows && attention_prefill_fits(shape.head_dim) &&
      std::all_of(rows, rows + n, [&](const RowInfo& r) { return r.slot == rows[0].slot; })) {
    // A prompt's rows (attention_prefill.cu): one block per 64 rows and head, no splits.
    const AttentionArgs a = attention_args(qs, c, layer, n, rows, shape, os);
    stamp(os);
    record(run<AttentionArgs, launch_attention_prefill>, a);
    return;
  }
  // Splits from the cache size and the batch only, never the positions (see attention.cu).
  // Decode (n <= 8): splits for chunks of attn_chunk_ (8) positions (larger where n_ctx would
  // need more than kAttentionMaxSplits), so that a step costs what its stored positions cost;
  // the kernel picks each row's chunk from its length (attention.cu row_chunk).
  // Prefill: enough blocks for two per multiprocessor, chunks of at least 64 positions.
  const int64_t head_blocks = (int64_t(shape.n_heads) + 3) / 4 * n;
  int64_t chunk;
  if (n <= 8) {
    chunk = attn_chunk_;
  } else {
    const int64_t want = std::clamp<int64_t>((2 * st_->ctx.sm_count + head_blocks - 1) / head_blocks, 1,
                                             (d.n_ctx + 63) / 64);
    chunk = ((d.n_ctx + want - 1) / want + 31) / 32 * 32;
  }
  chunk = std::max(chunk, ((d.n_ctx + kAttentionMaxSplits - 1) / kAttentionMaxSplits + 7) / 8 * 8);
  const int64_t splits = (d.n_ctx + chunk - 1) / chunk;
  // One row whose output is wo's x in a Llama layer: the kernel also makes that x's f16 copy
  // and digits when wo would take variant 6 (a tiled wo of 64-row tiles; otherwise they go
  // unused), registered as half_x's conversion of out so that wo's matvec skips convert_x.
  const bool convert = fusing() && n == 1 && shape.head_dim % 32 == 0 && dp4a_by_default(width, 1);
  uint16_t* xh = nullptr;
  std::pair<uint8_t*, float*> xq{nullptr, nullptr};
  if (convert) {  // before attention_args: growing scratch drains, which would drop staged rows
    xh = static_cast<uint16_t*>(st_->x_half.ensure(*st_, checked_mul(op, width, 2), "matmul x (f16)"));
    xq = xq_scratch(width);
  }
  float* partial = nullptr;
  uint32_t* counters = nullptr;
  if (splits > 1) {
    partial = static_cast<float*>(st_->attn.ensure(
        *st_, checked_mul(op, int64_t(n) * shape.n_heads * splits, int64_t(shape.head_dim + 2) * 4), "attention"));
    counters = static_cast<uint32_t*>(st_->attn_counters.ensure(*st_, size_t(head_blocks) * 4, "attention counters"));
  }
  AttentionArgs a = attention_args(qs, c, layer, n, rows, shape, os);
  a.partial = partial;
  a.counters = counters;
  a.splits = splits;
  a.chunk = chunk;
  a.adaptive = n <= 8 && attn_adaptive_;
  a.x_half = xh;
  std::tie(a.xq, a.xq_meta) = xq;
  stamp(os);
  record(run<AttentionArgs, launch_attention>, a);
  if (convert) half_x_ = HalfX{&os, os.version, 1, width, width, false, false, true, xh};
}

// Begins attention's op (its rows staged) and fills the arguments both kernels take.
AttentionArgs CudaBackend::attention_args(const CudaBuffer& q, CudaKvCache& c, int layer, int n, const RowInfo* rows,
                                          const AttentionShape& shape, CudaBuffer& out) {
  st_->queue->begin_op(size_t(n) * sizeof(RowInfo));
  auto a = zeroed<AttentionArgs>();
  a.q = q.ptr();
  a.k_cache = c.k.get();
  a.v_cache = c.v.get();
  a.rows = static_cast<const RowInfo*>(st_->queue->stage(rows, size_t(n) * sizeof(RowInfo)));
  a.out = out.ptr();
  a.n = n;
  a.layer = layer;
  a.n_slots = c.desc.n_slots;
  a.n_ctx = c.desc.n_ctx;
  a.n_heads = shape.n_heads;
  a.n_kv_heads = shape.n_kv_heads;
  a.head_dim = shape.head_dim;
  a.f16 = c.desc.type == KvType::f16;
  return a;
}

void CudaBackend::top_k(const Buffer& logits, int n, int width, int k, int32_t* ids, float* vals) {
  const char* op = "top_k";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  flush_pending();
  const CudaBuffer& x = cuda_buffer(logits, op, "logits");
  if (n < 1 || width < 1 || k < 1 || k > width || k > kMaxTopK)
    fail(op, "n = ", n, ", width = ", width, ", k = ", k, "; expected n >= 1 and 1 <= k <= min(width, ", kMaxTopK, ")");
  if (!ids || !vals) fail(op, "ids and vals must not be null");
  check_count(op, "logits", x, n, width);
  const size_t count = size_t(n) * size_t(k);
  // Rows split into blocks of at least 2048 columns (4 per thread), at most 64 blocks a row.
  const int64_t per_block = std::max<int64_t>(2048, (int64_t(width) + 63) / 64);
  const int64_t blocks = (width + per_block - 1) / per_block;
  const size_t cands = count * size_t(blocks);
  // Before recording: growing the scratch drains the queue.
  auto* out = static_cast<uint8_t*>(st_->topk.ensure(*st_, count * 8 + (blocks > 1 ? cands * 8 : 0), "top_k results"));
  auto* counters = blocks > 1 ? static_cast<uint32_t*>(st_->topk_counters.ensure(*st_, size_t(n) * 4, "top_k counters"))
                              : nullptr;
  st_->queue->begin_op(0);
  auto a = zeroed<TopKArgs>();
  a.logits = x.ptr();
  a.ids = reinterpret_cast<int32_t*>(out);
  a.vals = reinterpret_cast<float*>(out + count * 4);
  a.n = n;
  a.width = width;
  a.k = k;
  a.blocks = blocks;
  a.per_block = per_block;
  if (blocks > 1) {
    a.cand_v = reinterpret_cast<float*>(out + count * 8);
    a.cand_i = reinterpret_cast<int32_t*>(out + count * 8 + cands * 4);
    a.counters = counters;
  }
  record(run<TopKArgs, launch_top_k>, a);
  st_->copy_to_host(ids, out, count * 4);  // runs the recorded ops first
  st_->copy_to_host(vals, out + count * 4, count * 4);
}

}  // namespace sbits::kernels::cuda
