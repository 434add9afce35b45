// The Llama forward pass, written once against kernels::Backend.
//
// One call runs a batch of rows (tokens) through every layer. Rows may belong to different
// sequences (KV-cache slots): a prompt's prefill is many rows of one slot, batched decode is one
// row per slot. Scratch buffers are allocated once for `max_rows` rows; callers split longer
// inputs into chunks of at most max_rows() rows.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "engine/model.h"

namespace sbits {

// Which linear layer an activation feeds (for calibration statistics).
enum class LinearInput { attn_qkv, attn_output, ffn_gate_up, ffn_down, classifier };

// Sees the input of every linear layer as the forward pass runs (host copies, [n, width] row
// major). Calibration uses it to accumulate XᵀX per layer; it costs nothing when unset.
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  virtual void on_linear_input(size_t layer, LinearInput which, const float* x, int n, int width) = 0;
};

class Forward {
 public:
  Forward(const Model& model, int max_rows);

  int max_rows() const { return max_rows_; }

  // Creates a KV cache for this model: n_slots sequences of n_ctx positions each.
  std::unique_ptr<kernels::KvCache> make_kv_cache(int n_slots, int n_ctx, kernels::KvType type) const;

  // Runs tokens[i] at rows[i] (1 <= n <= max_rows), storing their keys and values in `cache`.
  // For each index j in logit_rows, writes the vocab_size logits of row logit_rows[j] to
  // logits_out + j * vocab_size. Positions must be < the cache's n_ctx (checked: EngineError).
  // The observer must outlive the runs it watches; nullptr detaches it.
  void set_observer(ForwardObserver* observer) { observer_ = observer; }

  void run(kernels::KvCache& cache, std::span<const int32_t> tokens, std::span<const kernels::RowInfo> rows,
           std::span<const int32_t> logit_rows, float* logits_out);

  // The same pass, but for each index j in logit_rows only the k largest logits of row
  // logit_rows[j] come back (kernels::Backend::top_k: on a GPU backend the selection runs on the
  // device and the full logits never cross to the host): ids_out[j * k + i] and
  // vals_out[j * k + i], best first, equal logits by lower id. Greedy decoding is k = 1.
  // 1 <= k <= min(vocab_size, Backend::kMaxTopK); logit_rows must not be empty.
  void run_top_k(kernels::KvCache& cache, std::span<const int32_t> tokens, std::span<const kernels::RowInfo> rows,
                 std::span<const int32_t> logit_rows, int k, int32_t* ids_out, float* vals_out);

 private:
  void check_rows(const kernels::KvCache& cache, std::span<const int32_t> tokens,
                  std::span<const kernels::RowInfo> rows, std::span<const int32_t> logit_rows) const;
  void attention_block(size_t layer, kernels::KvCache& cache, int n, const kernels::RowInfo* rows);
  void ffn_block(size_t layer, int n);
  // Everything up to the logits of logit_rows in logits_ (on the backend); returns their count.
  int compute_logits(kernels::KvCache& cache, std::span<const int32_t> tokens, std::span<const kernels::RowInfo> rows,
                     std::span<const int32_t> logit_rows);
  void observe(size_t layer, LinearInput which, const kernels::Buffer& x, int n, int width);

  const Model& model_;
  kernels::Backend& be_;
  int max_rows_;
  int q_dim_, kv_dim_;
  kernels::AttentionShape shape_;
  kernels::RopeStyle rope_style_;
  ForwardObserver* observer_ = nullptr;
  std::vector<float> observed_;
  // x: residual stream; h: normed input of a block; q/k/v/att: attention; gate/up: FFN.
  std::unique_ptr<kernels::Buffer> x_, h_, q_, k_, v_, att_, gate_, up_, sel_, logits_;
};

}  // namespace sbits
