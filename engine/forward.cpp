#include "engine/forward.h"

#include <fmt/format.h>

#include <algorithm>

namespace sbits {

using kernels::RowInfo;

Forward::Forward(const Model& model, int max_rows) : model_(model), be_(model.backend()), max_rows_(max_rows) {
  const ModelConfig& c = model.config();
  if (max_rows < 1) throw EngineError(fmt::format("Forward: max_rows must be >= 1, got {}", max_rows));
  q_dim_ = static_cast<int>(c.n_heads * c.head_dim);
  kv_dim_ = static_cast<int>(c.n_kv_heads * c.head_dim);
  shape_ = {static_cast<int>(c.n_heads), static_cast<int>(c.n_kv_heads), static_cast<int>(c.head_dim)};
  rope_style_ = c.rope == RopeConvention::neox ? kernels::RopeStyle::neox : kernels::RopeStyle::interleaved;
  const size_t r = static_cast<size_t>(max_rows);
  x_ = be_.alloc(r * c.dim);
  h_ = be_.alloc(r * c.dim);
  q_ = be_.alloc(r * q_dim_);
  k_ = be_.alloc(r * kv_dim_);
  v_ = be_.alloc(r * kv_dim_);
  att_ = be_.alloc(r * q_dim_);
  gate_ = be_.alloc(r * c.ffn_dim);
  up_ = be_.alloc(r * c.ffn_dim);
  sel_ = be_.alloc(r * c.dim);
  logits_ = be_.alloc(r * c.vocab_size);
}

std::unique_ptr<kernels::KvCache> Forward::make_kv_cache(int n_slots, int n_ctx, kernels::KvType type) const {
  const ModelConfig& c = model_.config();
  kernels::KvCacheDesc d;
  d.n_layers = static_cast<int>(c.n_layers);
  d.n_slots = n_slots;
  d.n_ctx = n_ctx;
  d.n_kv_heads = static_cast<int>(c.n_kv_heads);
  d.head_dim = static_cast<int>(c.head_dim);
  d.type = type;
  return be_.create_kv_cache(d);
}

void Forward::check_rows(const kernels::KvCache& cache, std::span<const int32_t> tokens,
                         std::span<const RowInfo> rows, std::span<const int32_t> logit_rows) const {
  const int n = static_cast<int>(tokens.size());
  if (n < 1 || n > max_rows_ || rows.size() != tokens.size())
    throw EngineError(fmt::format("forward: {} tokens and {} rows; expected equal counts in 1..{}", tokens.size(),
                                  rows.size(), max_rows_));
  const auto vocab = static_cast<int64_t>(model_.config().vocab_size);
  for (int i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab)
      throw EngineError(fmt::format("forward: token id {} at row {} is outside the vocabulary [0, {})", tokens[i], i,
                                    vocab));
    if (rows[i].pos < 0 || rows[i].pos >= cache.desc.n_ctx)
      throw EngineError(fmt::format("forward: position {} at row {} is past the context length {}", rows[i].pos, i,
                                    cache.desc.n_ctx));
    if (rows[i].slot < 0 || rows[i].slot >= cache.desc.n_slots)
      throw EngineError(fmt::format("forward: slot {} at row {} is outside [0, {})", rows[i].slot, i,
                                    cache.desc.n_slots));
  }
  for (int32_t r : logit_rows)
    if (r < 0 || r >= n) throw EngineError(fmt::format("forward: logit row {} is outside [0, {})", r, n));
}

void Forward::observe(size_t layer, LinearInput which, const kernels::Buffer& x, int n, int width) {
  if (!observer_) return;
  observed_.resize(static_cast<size_t>(n) * static_cast<size_t>(width));
  be_.read(x, observed_.data(), observed_.size());
  observer_->on_linear_input(layer, which, observed_.data(), n, width);
}

void Forward::attention_block(size_t layer, kernels::KvCache& cache, int n, const RowInfo* rows) {
  const ModelConfig& c = model_.config();
  const LayerWeights& w = model_.layer(layer);
  const auto eps = static_cast<float>(c.norm_eps);
  const auto theta = static_cast<float>(c.rope_theta);
  be_.rmsnorm(*x_, *w.attn_norm, eps, n, *h_);
  observe(layer, LinearInput::attn_qkv, *h_, n, static_cast<int>(c.dim));
  be_.matmul(*w.wq, *h_, n, *q_, false);
  be_.matmul(*w.wk, *h_, n, *k_, false);
  be_.matmul(*w.wv, *h_, n, *v_, false);
  be_.rope_and_store(*q_, *k_, *v_, cache, static_cast<int>(layer), n, rows, shape_, theta, rope_style_);
  be_.attention(*q_, cache, static_cast<int>(layer), n, rows, shape_, *att_);
  observe(layer, LinearInput::attn_output, *att_, n, q_dim_);
  be_.matmul(*w.wo, *att_, n, *x_, /*accumulate=*/true);
}

void Forward::ffn_block(size_t layer, int n) {
  const LayerWeights& w = model_.layer(layer);
  const auto dim = static_cast<int>(model_.config().dim), ffn = static_cast<int>(model_.config().ffn_dim);
  be_.rmsnorm(*x_, *w.ffn_norm, static_cast<float>(model_.config().norm_eps), n, *h_);
  observe(layer, LinearInput::ffn_gate_up, *h_, n, dim);
  be_.matmul(*w.w_gate, *h_, n, *gate_, false);
  be_.matmul(*w.w_up, *h_, n, *up_, false);
  be_.swiglu(*gate_, *up_, static_cast<size_t>(n) * model_.config().ffn_dim, *gate_);
  observe(layer, LinearInput::ffn_down, *gate_, n, ffn);
  be_.matmul(*w.w_down, *gate_, n, *x_, /*accumulate=*/true);
}

void Forward::run(kernels::KvCache& cache, std::span<const int32_t> tokens, std::span<const RowInfo> rows,
                  std::span<const int32_t> logit_rows, float* logits_out) {
  const int m = compute_logits(cache, tokens, rows, logit_rows);
  if (m > 0) be_.read(*logits_, logits_out, static_cast<size_t>(m) * model_.config().vocab_size);
}

void Forward::run_top_k(kernels::KvCache& cache, std::span<const int32_t> tokens, std::span<const RowInfo> rows,
                        std::span<const int32_t> logit_rows, int k, int32_t* ids_out, float* vals_out) {
  const auto vocab = static_cast<int>(model_.config().vocab_size);
  if (logit_rows.empty() || k < 1 || k > std::min(vocab, kernels::Backend::kMaxTopK))
    throw EngineError(fmt::format("forward: top-{} of {} logit rows; expected at least one row and 1 <= k <= {}", k,
                                  logit_rows.size(), std::min(vocab, kernels::Backend::kMaxTopK)));
  const int m = compute_logits(cache, tokens, rows, logit_rows);
  be_.top_k(*logits_, m, vocab, k, ids_out, vals_out);
}

int Forward::compute_logits(kernels::KvCache& cache, std::span<const int32_t> tokens, std::span<const RowInfo> rows,
                            std::span<const int32_t> logit_rows) {
  check_rows(cache, tokens, rows, logit_rows);
  const int n = static_cast<int>(tokens.size());
  be_.embed(model_.embedding(), tokens.data(), n, *x_);
  for (size_t l = 0; l < model_.config().n_layers; ++l) {
    attention_block(l, cache, n, rows.data());
    ffn_block(l, n);
  }
  if (logit_rows.empty()) return 0;
  // Only the rows whose logits are wanted go through the final norm and the classifier, which
  // for small models costs as much as all the layers together.
  const int m = static_cast<int>(logit_rows.size());
  const auto dim = static_cast<int>(model_.config().dim);
  be_.get_rows(*x_, logit_rows.data(), m, dim, *sel_);
  be_.rmsnorm(*sel_, model_.output_norm(), static_cast<float>(model_.config().norm_eps), m, *sel_);
  observe(model_.config().n_layers, LinearInput::classifier, *sel_, m, dim);
  be_.matmul(model_.output(), *sel_, m, *logits_, false);
  return m;
}

}  // namespace sbits
