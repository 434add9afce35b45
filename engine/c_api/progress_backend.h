// A backend that forwards every op to another one and reports weight uploads as load progress.
//
// Model::load has no progress hook, but it uploads every weight through the backend it is given,
// one tensor at a time: putting this in front of the real backend gives per-tensor progress and
// a way to cancel (upload() throws LoadCancelled, which unwinds Model::load cleanly) without
// touching the engine. The Model keeps a reference to the backend it was loaded with, so this
// front stays in place for the model's lifetime, costing one extra virtual call per op.
// Every Backend method must be forwarded here. A pure virtual one left out makes this class
// abstract and the build fails; the ones with a default body (rope_and_store, top_k) would
// silently take the slower default instead, so they are forwarded by hand.
// Threading: the progress state is touched only during the load (one thread); afterwards the
// forwarding methods are as thread-safe as the backend behind them.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "kernels/backend.h"
#include "sbits.h"

namespace sbits::capi {

class LoadCancelled : public std::runtime_error {
 public:
  LoadCancelled() : std::runtime_error("the load was cancelled by the progress callback") {}
};

class ProgressBackend final : public kernels::Backend {
 public:
  explicit ProgressBackend(kernels::Backend& inner) : in_(inner) {}

  // Reports to `callback` while uploads add up to `total_bytes`; NULL callback: no reports.
  void start_progress(sbits_progress_callback callback, void* user_data, uint64_t total_bytes) {
    callback_ = callback;
    user_data_ = user_data;
    total_ = total_bytes;
    done_ = 0;
  }
  // Calls the callback with `fraction` (clamped to [0, 1]); throws LoadCancelled if it says stop.
  void report(double fraction) {
    if (!callback_) return;
    const float f = fraction < 0 ? 0.0f : fraction > 1 ? 1.0f : static_cast<float>(fraction);
    if (callback_(f, user_data_) != 0) throw LoadCancelled();
  }
  void stop_progress() { callback_ = nullptr; }

  std::string name() const override { return in_.name(); }
  std::string device_description() const override { return in_.device_description(); }

  std::unique_ptr<kernels::Weight> upload(const kernels::HostWeight& w) override {
    auto weight = in_.upload(w);
    if (callback_) {
      done_ += w.bytes;
      report(total_ ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0);
    }
    return weight;
  }
  std::unique_ptr<kernels::Buffer> alloc(size_t count) override { return in_.alloc(count); }
  void write(kernels::Buffer& dst, const float* src, size_t count, size_t offset) override {
    in_.write(dst, src, count, offset);
  }
  void read(const kernels::Buffer& src, float* dst, size_t count, size_t offset) override {
    in_.read(src, dst, count, offset);
  }
  std::unique_ptr<kernels::KvCache> create_kv_cache(const kernels::KvCacheDesc& desc) override {
    return in_.create_kv_cache(desc);
  }
  void synchronize() override { in_.synchronize(); }

  void embed(const kernels::Weight& table, const int32_t* ids, int n, kernels::Buffer& out) override {
    in_.embed(table, ids, n, out);
  }
  void rmsnorm(const kernels::Buffer& x, const kernels::Weight& w, float eps, int n, kernels::Buffer& out) override {
    in_.rmsnorm(x, w, eps, n, out);
  }
  void matmul(const kernels::Weight& w, const kernels::Buffer& x, int n, kernels::Buffer& y, bool accumulate) override {
    in_.matmul(w, x, n, y, accumulate);
  }
  void rope(kernels::Buffer& x, int n, int n_heads, int head_dim, const kernels::RowInfo* rows, float theta,
            kernels::RopeStyle style) override {
    in_.rope(x, n, n_heads, head_dim, rows, theta, style);
  }
  void kv_store(kernels::KvCache& cache, int layer, const kernels::Buffer& k, const kernels::Buffer& v, int n,
                const kernels::RowInfo* rows) override {
    in_.kv_store(cache, layer, k, v, n, rows);
  }
  void rope_and_store(kernels::Buffer& q, kernels::Buffer& k, const kernels::Buffer& v, kernels::KvCache& cache,
                      int layer, int n, const kernels::RowInfo* rows, const kernels::AttentionShape& shape,
                      float theta, kernels::RopeStyle style) override {
    in_.rope_and_store(q, k, v, cache, layer, n, rows, shape, theta, style);
  }
  void attention(const kernels::Buffer& q, const kernels::KvCache& cache, int layer, int n,
                 const kernels::RowInfo* rows, const kernels::AttentionShape& shape, kernels::Buffer& out) override {
    in_.attention(q, cache, layer, n, rows, shape, out);
  }
  void swiglu(const kernels::Buffer& gate, const kernels::Buffer& up, size_t count, kernels::Buffer& out) override {
    in_.swiglu(gate, up, count, out);
  }
  void add(kernels::Buffer& x, const kernels::Buffer& y, size_t count) override { in_.add(x, y, count); }
  void get_rows(const kernels::Buffer& x, const int32_t* src_rows, int n, int width, kernels::Buffer& out) override {
    in_.get_rows(x, src_rows, n, width, out);
  }
  void top_k(const kernels::Buffer& logits, int n, int width, int k, int32_t* ids, float* vals) override {
    in_.top_k(logits, n, width, k, ids, vals);
  }

 private:
  kernels::Backend& in_;
  sbits_progress_callback callback_ = nullptr;
  void* user_data_ = nullptr;
  uint64_t total_ = 0, done_ = 0;
};

}  // namespace sbits::capi
