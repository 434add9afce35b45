// Row-wise and element-wise ops, the KV cache, attention and top_k on the Vulkan backend.
// Arguments are checked as the CPU backend checks them, before anything is recorded.
#include <cmath>
#include <cstring>

#include "kernels/vulkan/vk_backend_impl.h"

namespace sbits::kernels::vk {
namespace {

// RowInfo is {int32 slot, int32 pos}: the shaders read it as ivec2.
static_assert(sizeof(RowInfo) == 8, "RowInfo is staged as ivec2");

VkKvCacheObj& vk_cache(const KvCache& c, const char* op) {
  auto* p = dynamic_cast<const VkKvCacheObj*>(&c);
  if (!p) fail(op, "the cache was not created by the Vulkan backend");
  return const_cast<VkKvCacheObj&>(*p);
}

// kv_store's checks, which rope_and_store makes too: the cache, the layer, the rows and the
// sizes of k and v.
VkKvCacheObj& checked_kv_store(KvCache& cache, int layer, const VkBufferObj& k, const VkBufferObj& v, int n,
                               const RowInfo* rows) {
  const char* op = "kv_store";
  VkKvCacheObj& c = vk_cache(cache, op);
  check_layer(op, c.desc, layer);
  check_cache_rows(op, c.desc, rows, n);
  const int64_t width = int64_t(c.desc.n_kv_heads) * c.desc.head_dim;
  check_count(op, "k", k, n, width);
  check_count(op, "v", v, n, width);
  return c;
}

}  // namespace

void VulkanBackend::embed(const Weight& table, const int32_t* ids, int n, Buffer& out) {
  const char* op = "embed";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  const VkWeightObj& t = vk_weight(table, op);
  VkBufferObj& o = vk_buffer(out, op, "out");
  check_rows_pointer(op, ids, n);
  check_count(op, "out", o, n, t.cols);
  for (int r = 0; r < n; ++r)
    if (ids[r] < 0 || ids[r] >= t.rows)
      fail(op, "ids[", r, "] = ", ids[r], " is outside the table's rows [0, ", t.rows, ")");
  if (n == 0) return;
  st_->stream.reserve(size_t(n) * 4, 1, op);
  const BufRef idb = st_->stream.stage(ids, size_t(n) * 4);
  if (t.type == WeightType::tiled) {
    struct {
      uint32_t rows, cols, R, C, G, tiles_c, accumulate, n_out, row0, use_ids;
    } pc{uint32_t(t.rows), uint32_t(t.cols), t.tile_rows, t.tile_cols, t.group, t.tiles_c, 0, uint32_t(n), 0, 1};
    const Pipeline& p = pipeline("tiled", {1, 1, 64}, 5);
    dispatch_1d(p, {BufRef{t.mem.buffer}, BufRef{t.table.buffer}, o.ref(), o.ref(), idb}, &pc, sizeof(pc),
                size_t(n) * size_t((t.cols + 7) / 8));  // tiled.comp MODE 1: 8 columns each
    return;
  }
  struct {
    uint32_t n, width;
  } pc{uint32_t(n), uint32_t(t.cols)};
  const Pipeline& p = pipeline("rows", {uint32_t(t.type)}, 3);
  dispatch_1d(p, {BufRef{t.mem.buffer}, idb, o.ref()}, &pc, sizeof(pc), size_t(n) * size_t(t.cols));
}

void VulkanBackend::get_rows(const Buffer& x, const int32_t* src_rows, int n, int width, Buffer& out) {
  const char* op = "get_rows";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  const VkBufferObj& xs = vk_buffer(x, op, "x");
  VkBufferObj& o = vk_buffer(out, op, "out");
  check_get_rows_args(op, xs, src_rows, n, width, o);
  if (n == 0) return;
  st_->stream.reserve(size_t(n) * 4, 1, op);
  const BufRef idb = st_->stream.stage(src_rows, size_t(n) * 4);
  struct {
    uint32_t n, width;
  } pc{uint32_t(n), uint32_t(width)};
  dispatch_1d(pipeline("rows", {0}, 3), {xs.ref(), idb, o.ref()}, &pc, sizeof(pc), size_t(n) * size_t(width));
}

void VulkanBackend::rmsnorm(const Buffer& x, const Weight& w, float eps, int n, Buffer& out) {
  const char* op = "rmsnorm";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  const VkWeightObj& wt = vk_weight(w, op);
  const VkBufferObj& xs = vk_buffer(x, op, "x");
  VkBufferObj& o = vk_buffer(out, op, "out");
  if (n < 0) fail(op, "n must be >= 0, got ", n);
  if (wt.rows != 1 || wt.type == WeightType::tiled)
    fail(op, "the weight must be a dense vector (1 row), got ", wt.rows, " x ", wt.cols, " ", weight_type_name(wt.type));
  if (!(eps >= 0.0f) || !std::isfinite(eps)) fail(op, "eps must be finite and >= 0, got ", eps);
  check_count(op, "x", xs, n, wt.cols);
  check_count(op, "out", o, n, wt.cols);
  if (n == 0) return;
  st_->stream.reserve(0, 1, op);
  if (n == 1 && &xs != &o && fuse_digits(o, size_t(wt.cols)))
    return dispatch_with_digits(1, uint32_t(wt.type), xs.ref(), BufRef{wt.mem.buffer}, o, eps);
  struct {
    uint32_t width;
    float eps;
  } pc{uint32_t(wt.cols), eps};
  st_->stream.dispatch(pipeline("rmsnorm", {uint32_t(wt.type)}, 3), {xs.ref(), BufRef{wt.mem.buffer}, o.ref()}, &pc,
                       sizeof(pc), uint32_t(n));
}

// cos and sin of pos * theta^(-2i/hd) are formed in double on the host, exactly as the CPU
// backend forms them (an f32 angle at pos ~ 1e5 would be off by ~0.01 rad), and staged: per row,
// (cos, sin) of each pair.
namespace {
std::vector<float> rope_cos_sin(const RowInfo* rows, int n, int head_dim, float theta) {
  const int half = head_dim / 2;
  std::vector<double> freq(size_t(half), 0.0);
  for (int i = 0; i < half; ++i) freq[size_t(i)] = std::pow(double(theta), -2.0 * i / head_dim);
  std::vector<float> cs(size_t(n) * size_t(half) * 2);
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < half; ++i) {
      const double angle = double(rows[r].pos) * freq[size_t(i)];
      cs[(size_t(r) * size_t(half) + size_t(i)) * 2] = float(std::cos(angle));
      cs[(size_t(r) * size_t(half) + size_t(i)) * 2 + 1] = float(std::sin(angle));
    }
  return cs;
}
}  // namespace

void VulkanBackend::rope(Buffer& x, int n, int n_heads, int head_dim, const RowInfo* rows, float theta,
                         RopeStyle style) {
  const char* op = "rope";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  VkBufferObj& xs = vk_buffer(x, op, "x");
  check_rope_args(op, xs, n, n_heads, head_dim, rows, theta, style);
  if (n == 0) return;
  const std::vector<float> cs = rope_cos_sin(rows, n, head_dim, theta);
  st_->stream.reserve(cs.size() * 4, 1, op);
  const BufRef csb = st_->stream.stage(cs.data(), cs.size() * 4);
  struct {
    uint32_t n, n_heads, head_dim, interleaved;
  } pc{uint32_t(n), uint32_t(n_heads), uint32_t(head_dim), style == RopeStyle::interleaved ? 1u : 0u};
  dispatch_1d(pipeline("rope", {}, 2), {xs.ref(), csb}, &pc, sizeof(pc),
              size_t(n) * size_t(n_heads) * size_t(head_dim / 2));
}

// One dispatch (rope_store.comp) instead of three. Aliased buffers take the three ops, in order,
// as the interface's default does: the fused kernel reads each head once.
void VulkanBackend::rope_and_store(Buffer& q, Buffer& k, const Buffer& v, KvCache& cache, int layer, int n,
                                   const RowInfo* rows, const AttentionShape& shape, float theta, RopeStyle style) {
  if (&q == &k || &v == &q || &v == &k || n > 65535)
    return Backend::rope_and_store(q, k, v, cache, layer, n, rows, shape, theta, style);
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  VkBufferObj& qs = vk_buffer(q, "rope", "x");
  VkBufferObj& ks = vk_buffer(k, "rope", "x");
  check_rope_args("rope", qs, n, shape.n_heads, shape.head_dim, rows, theta, style);
  check_rope_args("rope", ks, n, shape.n_kv_heads, shape.head_dim, rows, theta, style);
  const char* op = "kv_store";
  const VkBufferObj& vs = vk_buffer(v, op, "v");
  VkKvCacheObj& c = checked_kv_store(cache, layer, ks, vs, n, rows);
  const KvCacheDesc& d = c.desc;
  if (shape.n_kv_heads != d.n_kv_heads || shape.head_dim != d.head_dim)
    fail("rope_and_store", "shape has n_kv_heads=", shape.n_kv_heads, " head_dim=", shape.head_dim,
         ", the cache has n_kv_heads=", d.n_kv_heads, " head_dim=", d.head_dim);
  if (n == 0) return;
  const std::vector<float> cs = rope_cos_sin(rows, n, shape.head_dim, theta);
  st_->stream.reserve(cs.size() * 4 + size_t(n) * 8, 1, op);
  const BufRef rb = st_->stream.stage(rows, size_t(n) * 8);
  const BufRef csb = st_->stream.stage(cs.data(), cs.size() * 4);
  struct {
    uint32_t n_heads, n_kv_heads, head_dim, layer, n_slots, n_ctx, interleaved;
  } pc{uint32_t(shape.n_heads), uint32_t(d.n_kv_heads), uint32_t(d.head_dim), uint32_t(layer),
       uint32_t(d.n_slots), uint32_t(d.n_ctx), style == RopeStyle::interleaved ? 1u : 0u};
  st_->stream.dispatch(pipeline("rope_store", {d.type == KvType::f16 ? 0u : 1u}, 7),
                       {qs.ref(), ks.ref(), vs.ref(), BufRef{c.k.buffer}, BufRef{c.v.buffer}, rb, csb}, &pc,
                       sizeof(pc), uint32_t(shape.n_heads + 2 * d.n_kv_heads), uint32_t(n));
  c.mark_stored(layer, rows, n);
}

void VulkanBackend::kv_store(KvCache& cache, int layer, const Buffer& k, const Buffer& v, int n,
                             const RowInfo* rows) {
  const char* op = "kv_store";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  const VkBufferObj& ks = vk_buffer(k, op, "k");
  const VkBufferObj& vs = vk_buffer(v, op, "v");
  VkKvCacheObj& c = checked_kv_store(cache, layer, ks, vs, n, rows);
  const KvCacheDesc& d = c.desc;
  if (n == 0) return;
  st_->stream.reserve(size_t(n) * 8, 1, op);
  const BufRef rb = st_->stream.stage(rows, size_t(n) * 8);
  struct {
    uint32_t n, n_kv_heads, head_dim, layer, n_slots, n_ctx;
  } pc{uint32_t(n), uint32_t(d.n_kv_heads), uint32_t(d.head_dim), uint32_t(layer), uint32_t(d.n_slots),
       uint32_t(d.n_ctx)};
  dispatch_1d(pipeline("kv_store", {d.type == KvType::f16 ? 0u : 1u}, 5),
              {ks.ref(), vs.ref(), BufRef{c.k.buffer}, BufRef{c.v.buffer}, rb}, &pc, sizeof(pc),
              size_t(n) * size_t(d.n_kv_heads * d.head_dim / 2));
  c.mark_stored(layer, rows, n);
}

void VulkanBackend::attention(const Buffer& q, const KvCache& cache, int layer, int n, const RowInfo* rows,
                              const AttentionShape& shape, Buffer& out) {
  const char* op = "attention";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  VkKvCacheObj& c = vk_cache(cache, op);
  const KvCacheDesc& d = c.desc;
  const VkBufferObj& qs = vk_buffer(q, op, "q");
  VkBufferObj& os = vk_buffer(out, op, "out");
  check_attention_args(op, d, layer, n, rows, shape, qs, os, [&](int slot) { return c.end(layer, slot); });
  if (n == 0) return;
  if (n > 8 && attn_prefill_ && (d.head_dim == 64 || d.head_dim == 128) &&
      std::all_of(rows, rows + n, [&](const RowInfo& r) { return r.slot == rows[0].slot; }))
    return attention_prefill(qs, c, layer, n, rows, shape, os);
  // Decode (n <= 8): the positions split across workgroups, enough for chunks of
  // attn_min_chunk_ positions over the whole cache, at most 32; the shader uses as many as the
  // row's stored positions fill (attention.comp), so the count can follow n_ctx alone and a
  // replayed step keeps its grid. H200, 7B 2.5 bpw, decode after 3900 / 512 / 64 positions
  // (device run 143): at most 4 splits of the cache's 256 (the rule before) 114 / 208 / 274
  // tok/s; chunks of 64, up to 62 splits, 186 / 267 / 283; chunks of 128, 208 / 259 / 270;
  // chunks of 64, at most 32 splits (this rule), 207 / 267 / 282 (run 144).
  const uint32_t min_chunk = attn_splits_ != 0 ? 1u : uint32_t(attn_min_chunk_);
  const uint32_t splits = attn_splits_ != 0 ? uint32_t(attn_splits_)
                          : n <= 8 ? uint32_t(std::clamp<int64_t>((d.n_ctx + min_chunk - 1) / min_chunk, 1, 32))
                                   : 1u;
  const size_t units = size_t(n) * size_t(shape.n_heads);
  const VkBuffer old_counters = attn_counters_.buffer;
  DeviceBuffer& cnt = scratch(attn_counters_, units * 4, false, "attention counters");
  if (cnt.buffer != old_counters) {  // new memory: counters start at zero
    st_->stream.reserve(0, 1, op);
    st_->stream.zero(cnt.buffer, 0, (cnt.bytes + 15) & ~size_t(15));
  }
  const BufRef part = splits > 1
                          ? BufRef{scratch(attn_partial_, units * splits * size_t(d.head_dim + 2) * 4, false,
                                           "attention partials").buffer}
                          : BufRef{cnt.buffer};
  st_->stream.reserve(size_t(n) * 8, 1, op);
  const BufRef rb = st_->stream.stage(rows, size_t(n) * 8);
  // One row with heads of 128 (a tile column each): the heads' outputs come with wo's digits
  // where out owns them (attention.comp).
  const bool digits = n == 1 && d.head_dim == 128 && fuse_digits(os, size_t(shape.n_heads) * 128);
  struct {
    uint32_t n_heads, n_kv_heads, head_dim, layer, n_slots, n_ctx;
    float scale;
    uint32_t splits, digits_tiles, min_chunk;
  } pc{uint32_t(shape.n_heads), uint32_t(d.n_kv_heads), uint32_t(d.head_dim), uint32_t(layer), uint32_t(d.n_slots),
       uint32_t(d.n_ctx), float(1.0 / std::sqrt(double(d.head_dim))), splits, digits ? os.digits_tiles : 0u,
       min_chunk};
  st_->stream.dispatch(pipeline("attention", {d.type == KvType::f16 ? 0u : 1u}, 8),
                       {qs.ref(), BufRef{c.k.buffer}, BufRef{c.v.buffer}, rb, os.ref(), part, BufRef{cnt.buffer},
                        digits ? BufRef{os.digits.buffer} : os.ref()},
                       &pc, sizeof(pc), uint32_t(shape.n_heads), uint32_t(n), splits);
  if (digits) digits_written(os);
}

// n > 8 rows of one slot, head_dim 64 or 128: 32 query rows of a head per workgroup, sharing
// each key and value read (attention_prefill.comp).
void VulkanBackend::attention_prefill(const VkBufferObj& q, const VkKvCacheObj& c, int layer, int n,
                                      const RowInfo* rows, const AttentionShape& shape, VkBufferObj& out) {
  const KvCacheDesc& d = c.desc;
  st_->stream.reserve(size_t(n) * 8, 1, "attention");
  const BufRef rb = st_->stream.stage(rows, size_t(n) * 8);
  struct {
    uint32_t n_heads, n_kv_heads, head_dim, layer, n_slots, n_ctx, n;
    float scale;
  } pc{uint32_t(shape.n_heads), uint32_t(d.n_kv_heads), uint32_t(d.head_dim), uint32_t(layer), uint32_t(d.n_slots),
       uint32_t(d.n_ctx), uint32_t(n), float(1.0 / std::sqrt(double(d.head_dim)))};
  constexpr uint32_t kRowsPerGroup = 32;  // attention_prefill.comp's QR
  st_->stream.dispatch(pipeline("attention_prefill", {d.type == KvType::f16 ? 0u : 1u}, 5),
                       {q.ref(), BufRef{c.k.buffer}, BufRef{c.v.buffer}, rb, out.ref()}, &pc, sizeof(pc),
                       uint32_t(shape.n_heads), (uint32_t(n) + kRowsPerGroup - 1) / kRowsPerGroup);
}

void VulkanBackend::swiglu(const Buffer& gate, const Buffer& up, size_t count, Buffer& out) {
  const char* op = "swiglu";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  const VkBufferObj& g = vk_buffer(gate, op, "gate");
  const VkBufferObj& u = vk_buffer(up, op, "up");
  VkBufferObj& o = vk_buffer(out, op, "out");
  check_count(op, "gate", g, count);
  check_count(op, "up", u, count);
  check_count(op, "out", o, count);
  if (count == 0) return;
  st_->stream.reserve(0, 1, op);
  if (fuse_digits(o, count)) return dispatch_with_digits(2, 0, g.ref(), u.ref(), o, 0.0f);
  const uint32_t pc[1] = {uint32_t(count)};
  dispatch_1d(pipeline("elementwise", {1}, 3), {g.ref(), u.ref(), o.ref()}, pc, sizeof(pc), count);
}

void VulkanBackend::add(Buffer& x, const Buffer& y, size_t count) {
  const char* op = "add";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  VkBufferObj& xs = vk_buffer(x, op, "x");
  const VkBufferObj& ys = vk_buffer(y, op, "y");
  check_count(op, "x", xs, count);
  check_count(op, "y", ys, count);
  if (count == 0) return;
  st_->stream.reserve(0, 1, op);
  const uint32_t pc[1] = {uint32_t(count)};
  dispatch_1d(pipeline("elementwise", {0}, 3), {xs.ref(), ys.ref(), xs.ref()}, pc, sizeof(pc), count);
}

void VulkanBackend::top_k(const Buffer& logits, int n, int width, int k, int32_t* ids, float* vals) {
  const char* op = "top_k";
  std::lock_guard<std::recursive_mutex> lock(st_->mutex);
  const VkBufferObj& l = vk_buffer(logits, op, "logits");
  if (n < 1 || width < 1 || k < 1 || k > width || k > kMaxTopK)
    fail(op, "n = ", n, ", width = ", width, ", k = ", k, "; expected n >= 1 and 1 <= k <= min(width, 64)");
  check_count(op, "logits", l, n, width);
  if (!ids || !vals) fail(op, "ids or vals is null");
  // Rows split into slices of at least 2048 columns (8 per invocation), at most 64 a row; the
  // slices' k best meet in a second dispatch (shaders/topk.comp).
  const int64_t per_block = std::max<int64_t>(2048, (int64_t(width) + 63) / 64);
  const int64_t blocks = (width + per_block - 1) / per_block;
  const size_t out_bytes = size_t(n) * size_t(k) * 8;
  DeviceBuffer& ob = scratch(topk_out_, out_bytes, true, op);
  DeviceBuffer& cb = scratch(topk_cand_, out_bytes * size_t(blocks), false, op);
  st_->stream.reserve(0, 2, op);
  const Pipeline& pipe = pipeline("topk", {}, 3);
  for (uint32_t phase = 0; phase < (blocks > 1 ? 2u : 1u); ++phase) {
    const uint32_t pc[5] = {uint32_t(width), uint32_t(k), uint32_t(per_block), uint32_t(blocks), phase};
    st_->stream.dispatch(pipe, {l.ref(), BufRef{cb.buffer}, BufRef{ob.buffer}}, pc, sizeof(pc),
                         phase == 0 ? uint32_t(blocks) : 1u, uint32_t(n));
  }
  st_->stream.flush();
  const auto* res = static_cast<const uint32_t*>(ob.mapped);
  for (size_t i = 0; i < size_t(n) * size_t(k); ++i) {
    ids[i] = int32_t(res[2 * i]);
    std::memcpy(&vals[i], &res[2 * i + 1], 4);
  }
}

}  // namespace sbits::kernels::vk
