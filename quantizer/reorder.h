// Bi-directional channel reordering that folds into the weights (no run-time cost).
//
// Tiles are R rows x C columns; a tile's bitwidth fits its weights best when they are equally
// sensitive. Permuting channels so that sensitive ones sit together makes the allocation's
// choices sharper: a few tiles hold the outlier channels and get the bits.
//
// Only permutations that leave the model's function unchanged are used:
//  hidden  one global permutation of the residual stream (dim): columns of tok_embd, of every
//          matrix that reads the stream (attn_q/k/v, ffn_gate/up, output) and the elements of
//          every RMSNorm weight; rows of every matrix that writes it (attn_output, ffn_down).
//          RMSNorm is invariant under a permutation (its mean of squares is a sum).
//  ffn     per layer, the intermediate dimension: rows of ffn_gate and ffn_up with the columns
//          of ffn_down (SwiGLU is elementwise).
// Not done: within-head permutations of V rows / O columns and whole-head permutations of
// Q/K. With head_dim a multiple of R (64, as in every Llama) each tile row-strip of Q/K/V is
// exactly one head's rows, so permuting inside a head cannot change which weights share a
// tile; and RoPE pairs dimensions inside a head.
//
// Channel scores (larger = more sensitive) sum over the matrices that touch the channel:
// for a column j, sum_i r_i c_j W_ij^2; for a row i, the same sum over j; each matrix's
// contribution normalised to total 1, so no single matrix dominates. Channels are sorted by
// descending score (stable, so equal scores keep their order).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quantizer/sensitivity.h"

namespace sbits::quantizer {

// perm[p] = the original channel now at position p. Empty = identity.
using Permutation = std::vector<int32_t>;

struct ModelPermutation {
  Permutation hidden;
  std::vector<Permutation> ffn;  // per layer
  bool empty() const { return hidden.empty() && ffn.empty(); }
};

// Which permutation applies to a tensor's rows and columns (nullptr = none).
struct TensorPermutation {
  const Permutation* rows = nullptr;
  const Permutation* cols = nullptr;
};
TensorPermutation permutation_of(const ModelPermutation& mp, const std::string& name);

// Accumulates channel scores tensor by tensor, then turns them into permutations.
class ReorderPlanner {
 public:
  ReorderPlanner(int dim, int ffn_dim, int n_layers);
  // w [rows][cols] in the original order, with its (unpermuted) sensitivity.
  void add(const std::string& name, const float* w, int64_t rows, int64_t cols, const TensorSensitivity& s);
  ModelPermutation plan() const;

 private:
  std::vector<double> hidden_;
  std::vector<std::vector<double>> ffn_;
};

// out = w with rows and columns permuted: out[p][q] = w[rows[p]][cols[q]].
void permute_matrix(const float* w, int64_t rows, int64_t cols, const TensorPermutation& tp, float* out);
// v'[p] = v[perm[p]] (for norm weights and per-channel statistics), any element size.
void permute_elements(const uint8_t* in, size_t elem_bytes, const Permutation& perm, uint8_t* out);
std::vector<float> permute_vector(const std::vector<float>& v, const Permutation* perm);

}  // namespace sbits::quantizer
