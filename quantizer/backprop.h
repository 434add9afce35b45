// Forward and backward pass of a float Llama model on the CPU, for gradient-based sensitivity.
//
// One call runs one sequence: tokens[0..n] gives n inputs tokens[0..n-1] at positions 0..n-1
// and n targets tokens[1..n]; the loss is the summed next-token cross-entropy (nats). The
// backward pass produces activation gradients only, no weight gradients: for every linear
// layer its input x [n, in] and delta = d(summed loss)/d(output) [n, out], and the gradient at
// the embedding output [n, dim]. Note that delta_t is the gradient of the whole sequence's loss
// with respect to the output at position t (through attention it also moves later tokens'
// losses), not of token t's loss alone: that is the quantity whose outer products give the
// Fisher / Gauss-Newton blocks of the summed loss.
//
// Numerics: activations f32; the matmuls are the engine CPU backend's (weights used in their
// stored dtype, f32 accumulation); norms' sums of squares, softmax sums and the loss in double.
// Memory: weights stay in the mmapped file. The backward pass multiplies by W^T, so each
// layer's matrices are transposed (in their stored dtype) when that layer's backward runs and
// freed after; the classifier (vocab x dim) is not transposed but multiplied from its rows
// (bp::matmul_dw). Layers are recomputed in the backward pass from the residual stream saved
// at each layer's input (activation checkpointing), so a sequence holds (n_layers + 1) x n x
// dim floats plus one layer's intermediates; logits are formed 64 rows at a time.
// Threading: one LlamaBackprop runs one sequence at a time on `threads` threads (the backend's
// pool for matmuls, heads and rows for the rest). Not thread-safe; use one per thread.
// Errors: FormatError for a file that is not a float Llama model, QuantizerError otherwise.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "formats/sbits_file.h"
#include "kernels/backend.h"

namespace sbits::quantizer {

enum class LinearKind { attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down, classifier };
inline constexpr int kLinearKinds = 8;
const char* linear_kind_name(LinearKind k);  // "attn_q", ..., "output"
// The tensor a linear layer reads: "blk.3.attn_q", "output", or "tok_embd" for a tied classifier.
std::string linear_tensor_name(const ModelConfig& c, int layer, LinearKind k);

// Receives a sequence's activations and gradients during loss_and_gradients(). Pointers are
// valid only during the call. on_linear may be called several times per layer and sequence
// (the classifier's rows come in chunks); row_begin is the position of the first row.
class GradObserver {
 public:
  virtual ~GradObserver() = default;
  virtual void on_linear(int layer, LinearKind kind, int row_begin, int n, const float* x, int in,
                         const float* delta, int out) = 0;
  // grad = d(summed loss)/d(embedding output) [n, dim] for the input tokens[0..n-1].
  virtual void on_embedding(const int32_t* tokens, int n, const float* grad, int dim) = 0;
};

// Adds `value` to one activation during the forward pass: output (row, col) of a linear layer
// (for q and k before RoPE), or of the embedding when `embedding` is set. For tests (finite
// differences against the backward pass).
struct Probe {
  bool embedding = false;
  int layer = 0;
  LinearKind kind = LinearKind::attn_q;
  int row = 0, col = 0;
  float value = 0.0f;
};

// Per-sequence state saved by a forward pass, from which forward_from() resumes.
struct ForwardCache {
  int n = 0;
  std::vector<std::vector<float>> residual;  // [n_layers + 1][n * dim]: the input of each layer, then the final
  std::vector<float> final_h;                // [n * dim]: the classifier's input (after output_norm)
  std::vector<float> lse, target_logit;      // [n]: per position
};

// Which targets the gradients are taken against (the loss always uses the data's).
//  data:    delta = softmax - onehot(next token): the empirical Fisher's gradients.
//  sampled: the onehot at a token drawn from the model's own softmax (one draw per position,
//           reproducible from `seed`): the Monte Carlo true Fisher, an unbiased estimate of the
//           Gauss-Newton matrix, which the empirical Fisher underestimates for tokens the model
//           rarely predicts (E[delta_i^2] = p_i (1 - p_i) instead of ~p_i^2).
enum class GradTargets { data, sampled };

struct BackpropOptions {
  int threads = 1;
  GradTargets targets = GradTargets::data;
  uint64_t seed = 1;
};

class LlamaBackprop {
 public:
  // `file` must outlive this object (weights are used in place).
  LlamaBackprop(const SbitsFile& file, const BackpropOptions& options = {});
  ~LlamaBackprop();
  LlamaBackprop(const LlamaBackprop&) = delete;
  LlamaBackprop& operator=(const LlamaBackprop&) = delete;

  const ModelConfig& config() const { return config_; }

  // Summed loss of the sequence. logits (optional) receives [n, vocab]; cache (optional) the
  // state forward_from() needs.
  double loss(std::span<const int32_t> tokens, std::vector<float>* logits = nullptr, ForwardCache* cache = nullptr);
  // Summed loss, resuming at the input of layer `layer` (n_layers: only the head) from a cache
  // filled by loss() with the same tokens and the weights before `layer` unchanged.
  double forward_from(std::span<const int32_t> tokens, const ForwardCache& cache, int layer);
  // Forward and backward; reports every linear layer's (x, delta) and the embedding gradient.
  double loss_and_gradients(std::span<const int32_t> tokens, GradObserver& observer);

  // Replaces 2-D weight `name` by w [rows * cols] f32 (copied), or restores the file's
  // weights when w is null. Throws QuantizerError for an unknown tensor or wrong size.
  void set_override(const std::string& name, const float* w, size_t count);
  void set_probe(std::optional<Probe> p) { probe_ = p; }

 private:
  struct Matrix;
  struct LayerActs;
  const Matrix& matrix(const std::string& name) const;
  const kernels::Weight& transposed(const Matrix& m, std::unique_ptr<kernels::Weight>& slot,
                                    std::vector<uint8_t>& bytes);
  void matmul(const kernels::Weight& w, const float* x, int n, float* y, bool accumulate);
  void linear(int layer, LinearKind kind, const float* x, int n, float* y);
  void embed(std::span<const int32_t> ids, float* x);
  void layer_forward(int layer, const float* x_in, int n, LayerActs& a, float* x_out);
  void layer_backward(int layer, const float* x_in, LayerActs& a, int n, float* dx, GradObserver& obs);
  double head(std::span<const int32_t> targets, const float* x, int n, std::vector<float>* logits,
              ForwardCache* cache, GradObserver* obs, float* dx);
  std::span<const int32_t> checked(std::span<const int32_t> tokens) const;

  const SbitsFile& file_;
  ModelConfig config_;
  int threads_;
  GradTargets grad_targets_;
  uint64_t seed_;
  uint64_t sequences_ = 0;  // loss_and_gradients calls so far: part of the sampling key
  std::unique_ptr<kernels::Backend> be_;
  std::map<std::string, std::unique_ptr<Matrix>> matrices_;
  std::map<std::string, std::vector<float>> norms_;
  std::unique_ptr<kernels::Buffer> bx_, by_;
  std::unique_ptr<LayerActs> acts_;
  std::optional<Probe> probe_;
};

}  // namespace sbits::quantizer
