// The element-wise, row-wise and attention pieces of the Llama forward and backward pass on
// host f32 arrays (quantizer/backprop.h composes them with the backend's matmul).
//
// Conventions: activations are row-major [n, width], row t is position t of one sequence
// (positions 0..n-1). "backward" functions take dL/d(output) and produce dL/d(input). Inner
// loops are written as axpy over contiguous memory (not as dot products), so that the compiler
// vectorizes them without reassociating float sums (-ffast-math is not used).
// Threading: functions taking `threads` split independent heads or rows over that many
// threads; results do not depend on the count. Pure functions otherwise.
#pragma once

#include <cstdint>
#include <vector>

#include "formats/model_config.h"
#include "formats/sbits_file.h"

namespace sbits::quantizer::bp {

// y = x * rs * g with rs = 1 / sqrt(mean(x^2) + eps) per row (rs written to rs[n]).
void rmsnorm_forward(const float* x, const float* g, int n, int dim, float eps, float* y, float* rs);
// dx (+)= d/dx of (x * rs(x) * g) applied to dy:  rs * u - rs^3 * x * (u . x) / dim, u = dy * g.
void rmsnorm_backward(const float* x, const float* g, const float* rs, const float* dy, int n, int dim,
                      float* dx, bool accumulate);

// Rotates every head of x [n, heads * head_dim] by its row's position (row t = position t), as
// the engine's CPU backend does (angles in double, pairs by `conv`). inverse = rotate by -angle,
// which is the transpose of the rotation and hence its backward pass.
void rope(float* x, int n, int heads, int head_dim, double theta, RopeConvention conv, bool inverse);

struct AttnShape {
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
};

// Causal attention of one sequence with grouped-query heads, scale 1/sqrt(head_dim).
// q, out [n, n_heads * hd]; k, v [n, n_kv_heads * hd]; lse [n_heads * n]: the log-sum-exp of
// each query's scores, kept so the backward pass recomputes the probabilities exactly.
void attention_forward(const float* q, const float* k, const float* v, int n, const AttnShape& s, float* out,
                       float* lse, int threads);
// Given out, lse from the forward pass and dout, writes dq [n, n_heads*hd] and dk, dv
// [n, n_kv_heads*hd] (overwritten), all with respect to the post-RoPE q and k.
void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                        const float* dout, int n, const AttnShape& s, float* dq, float* dk, float* dv, int threads);

// m = silu(gate) * up.
void swiglu_forward(const float* gate, const float* up, size_t count, float* m);
// dgate = dm * up * silu'(gate), dup = dm * silu(gate).
void swiglu_backward(const float* gate, const float* up, const float* dm, size_t count, float* dgate, float* dup);

// y[t, :] = sum_k d[t, k] W[k, :] for t < n: the input gradient of y = x W^T, computed from W
// [rows, cols] as stored (f32/f16/bf16 bytes, `layout`), so that no transposed copy of a large
// matrix (the classifier: vocab x dim) is needed. Rows of W are converted 32 at a time; each
// thread sums its share of the rows into its own y, added up at the end.
void matmul_dw(const uint8_t* w, Layout layout, int64_t rows, int64_t cols, const float* d, int n, float* y,
               int threads);

// Cross-entropy of n rows of logits [n, vocab] against targets[n]. Writes each row's
// log-sum-exp and target logit (either may be null) and, when `grad` is set, replaces the
// logits by d(sum of losses)/d(logits) = softmax - onehot(target). Returns the summed loss in
// nats (always against `targets`). With sample_key >= 0 the gradient's onehot is instead at a
// token drawn from the row's own softmax (row t uses the hash of sample_key + t): the Monte
// Carlo "true Fisher", whose E[delta_i^2] = p_i (1 - p_i) is the Gauss-Newton diagonal.
// Throws QuantizerError for a target outside [0, vocab).
double cross_entropy(float* logits, const int32_t* targets, int n, int vocab, bool grad, float* lse,
                     float* target_logit, int64_t sample_key = -1);

}  // namespace sbits::quantizer::bp
