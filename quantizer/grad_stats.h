// Gradient-based sensitivity: a diagonal, Kronecker-factored (K-FAC) Fisher of the mean
// calibration loss, in the factored form every sensitivity model shares (quantizer/sensitivity.h):
//     predicted dL(tile) = sum_i r_i sum_j c_j (W^_ij - W_ij)^2.
//
// What it predicts. L = (1/T) sum_t l_t is the mean next-token cross-entropy over the T
// predicted calibration tokens. To second order around the trained weights, with the Fisher
// (outer products of per-token gradients) standing in for the Hessian and the first-order term
// dropped (its sign is random across a tile's rounding errors):
//     dL ~= 1/2 sum_ij F_ij dW_ij^2,  F_ij = (1/T) sum_t delta_ti^2 x_tj^2,
// where x_t is the layer's input at position t and delta_t = d(sum_s l_s)/d(y_t) the gradient of
// the sequence's summed loss at the layer's output (quantizer/backprop.h). K-FAC's factoring
// E[delta^2 x^2] ~= E[delta^2] E[x^2] gives, for a linear layer W [out, in]:
//     r_i = 1/2 E_t[delta_ti^2],   c_j = E_t[x_tj^2]      (E_t = (1/T) sum over all tokens)
// so r.c is in nats of mean calibration loss per squared weight error: directly comparable
// across tensors, and a tile's predicted dL is an absolute loss increase.
//  classifier ("output"): delta = softmax - onehot(target), x = the final normed hidden state.
//  token embedding [vocab, dim]: the input is one-hot, so row k is used only by positions
//       whose token is k, with g_t = d(sum loss)/d(embedding output at t):
//       F_kj = (1/T) sum_{t: tok_t = k} g_tj^2. Factored exactly in the row sums:
//       r_k = 1/2 p_k gbar_k,  c_j = E_t[g_tj^2] / mean_j E_t[g_tj^2]  (mean of c is 1)
//       with gbar_k = mean over k's occurrences of mean_j g_tj^2, p_k = count_k / T. Tokens
//       never seen would get r_k = 0 (free to quantize to nothing); with good_turing they get
//       the Good-Turing unseen mass p0 = (tokens seen once) / T shared equally, seen tokens
//       p_k = (1 - p0) count_k / T, and gbar_k = the mean over all tokens.
//  tied embeddings (token_embd is also the classifier): the two factored terms (r1, c1),
//       (r2, c2) are merged as r = r1 mean(c1) + r2 mean(c2), c = (sum(r1) c1 + sum(r2) c2) /
//       sum(r): exact in the total sum_ij r_i c_j and in every row's sum, approximate per entry.
//
// Memory: the float model stays mmapped; LlamaBackprop holds one layer's activations of one
// sequence, the residual stream of one sequence and the classifier's transpose; the statistics
// are O(rows + cols) doubles per tensor.
// Threading: `threads` is used inside each sequence (matmuls, heads, softmax rows).
// Errors: FormatError (not a float Llama model), QuantizerError (tokens, options).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "quantizer/backprop.h"

namespace sbits::quantizer {

struct GradSensitivity {
  std::string name;        // "blk.0.attn_q", "output", "tok_embd"
  int64_t rows = 0, cols = 0;
  std::vector<float> r;    // [rows]
  std::vector<float> c;    // [cols]
};

enum class UnseenTokens { zero, good_turing };

struct GradStatsOptions {
  int seq_len = 512;       // positions per window; windows are tokens[s : s + seq_len + 1], s += seq_len
  int threads = 1;
  size_t max_tokens = 0;   // stop after this many predicted tokens (0: all)
  UnseenTokens unseen = UnseenTokens::good_turing;
  // data: empirical Fisher (delta from the next token); sampled: Monte Carlo true Fisher
  // (quantizer/backprop.h GradTargets) upstream of the classifier and, at the classifier, its
  // exact Gauss-Newton diagonal r_i = 1/2 E_t[p_ti (1 - p_ti)] (the empirical Fisher's
  // E[delta_i^2] ~ p_i^2 misses the curvature of rarely predicted tokens by orders of
  // magnitude). sampled predicted measured tile losses best (docs/SENSITIVITY.md); data stays
  // the default because sbits-quantize's published perplexities were measured with it.
  GradTargets targets = GradTargets::data;
  uint64_t seed = 1;
  // Called after each window with (tokens processed, tokens to process).
  std::function<void(size_t, size_t)> progress;
};

struct GradStatsResult {
  std::vector<GradSensitivity> tensors;  // every 2-D weight, in the file's order
  double mean_loss = 0;                  // mean next-token cross-entropy (nats) over `tokens`
  size_t tokens = 0;                     // predicted tokens T
  double seconds = 0;                    // wall time of the forward and backward passes
};

// Runs forward and backward over `tokens` (a token stream, BOS placement up to the caller) of
// the float model at `model_path`, in windows of seq_len. Throws QuantizerError when tokens
// hold fewer than 2 ids.
GradStatsResult collect_grad_sensitivity(const std::string& model_path, std::span<const int32_t> tokens,
                                         const GradStatsOptions& options = {});
// The same over given windows (each a fresh sequence: window[0..n-1] predict window[1..n], so
// a window of n + 1 ids gives n tokens; calibration_windows()' windows of seq_len ids give
// seq_len - 1). options.seq_len is ignored; max_tokens still applies.
GradStatsResult collect_grad_sensitivity(const std::string& model_path,
                                         const std::vector<std::vector<int32_t>>& windows,
                                         const GradStatsOptions& options = {});

// sum_ij r_i c_j (a_ij - b_ij)^2 over rows [r0, r1) x cols [c0, c1) of two [rows][cols]
// matrices with row stride ld: the predicted loss change of replacing b by a there.
double predicted_delta(const GradSensitivity& s, const float* a, const float* b, int64_t ld, int64_t r0, int64_t r1,
                       int64_t c0, int64_t c1);

}  // namespace sbits::quantizer
