// kv_store and attention over the KV cache. Layout: see cpu_backend.h / CpuKvCache.
#include <cmath>
#include <cstring>

#include "kernels/op_checks.h"
#include "kernels/cpu/cpu_backend_impl.h"

namespace sbits::kernels::cpu {
namespace {

// Attention work (positions x head_dim x heads) below which one thread does it all: the
// fork-join would cost more than it saves.
constexpr int64_t kAttentionInlineWork = 1 << 16;

}  // namespace

void CpuBackend::kv_store(KvCache& cache, int layer, const Buffer& k, const Buffer& v, int n, const RowInfo* rows) {
  const char* op = "kv_store";
  std::lock_guard<std::mutex> lock(op_mutex_);
  auto* c = dynamic_cast<CpuKvCache*>(&cache);
  if (!c) fail(op, "the cache was not created by the CPU backend");
  const KvCacheDesc& d = c->desc;
  const CpuBuffer& ks = cpu_buffer(k, op, "k");
  const CpuBuffer& vs = cpu_buffer(v, op, "v");
  check_layer(op, d, layer);
  check_cache_rows(op, d, rows, n);
  const int64_t width = int64_t(d.n_kv_heads) * d.head_dim;
  check_count(op, "k", ks, n, width);
  check_count(op, "v", vs, n, width);
  const size_t eb = c->elem_bytes();
  for (int r = 0; r < n; ++r) {
    for (int h = 0; h < d.n_kv_heads; ++h) {
      const size_t off = c->offset(layer, rows[r].slot, h, rows[r].pos) * eb;
      const float* kr = ks.data() + r * width + int64_t(h) * d.head_dim;
      const float* vr = vs.data() + r * width + int64_t(h) * d.head_dim;
      if (d.type == KvType::f16) {
        kernels_.f32_to_f16(kr, reinterpret_cast<uint16_t*>(c->k() + off), size_t(d.head_dim));
        kernels_.f32_to_f16(vr, reinterpret_cast<uint16_t*>(c->v() + off), size_t(d.head_dim));
      } else {
        std::memcpy(c->k() + off, kr, size_t(d.head_dim) * sizeof(float));
        std::memcpy(c->v() + off, vr, size_t(d.head_dim) * sizeof(float));
      }
    }
    int32_t& end = c->stored_end(layer, rows[r].slot);
    end = std::max(end, rows[r].pos + 1);
  }
}

void CpuBackend::attention(const Buffer& q, const KvCache& cache, int layer, int n, const RowInfo* rows,
                           const AttentionShape& shape, Buffer& out) {
  const char* op = "attention";
  std::lock_guard<std::mutex> lock(op_mutex_);
  const auto* c = dynamic_cast<const CpuKvCache*>(&cache);
  if (!c) fail(op, "the cache was not created by the CPU backend");
  const KvCacheDesc& d = c->desc;
  const CpuBuffer& qs = cpu_buffer(q, op, "q");
  CpuBuffer& os = cpu_buffer(out, op, "out");
  check_attention_args(op, d, layer, n, rows, shape, qs, os, [&](int slot) { return c->stored_end(layer, slot); });
  const int64_t width = int64_t(shape.n_heads) * shape.head_dim;
  int64_t work = 0;
  for (int r = 0; r < n; ++r) work += (int64_t(rows[r].pos) + 1) * width;
  const int group = shape.n_heads / shape.n_kv_heads;
  const int hd = shape.head_dim;
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const size_t eb = c->elem_bytes();
  const int64_t tasks = int64_t(n) * shape.n_heads;
  parallel_for(tasks, work < kAttentionInlineWork ? tasks : 1, [&](int64_t b, int64_t e, int thread) {
    float* s = scratch(thread, attention_scratch_floats(hd));
    for (int64_t t = b; t < e; ++t) {
      const int r = int(t / shape.n_heads), h = int(t % shape.n_heads);
      const size_t off = c->offset(layer, rows[r].slot, h / group, 0) * eb;
      AttentionHead a;
      a.q = qs.data() + r * width + int64_t(h) * hd;
      a.k = c->k() + off;
      a.v = c->v() + off;
      a.n_pos = int64_t(rows[r].pos) + 1;
      a.head_dim = hd;
      a.scale = scale;
      a.kv_type = d.type;
      a.out = os.data() + r * width + int64_t(h) * hd;
      a.scratch = s;
      kernels_.attention_head(a);
    }
  });
}

}  // namespace sbits::kernels::cpu
