#include "quantizer/reorder.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "formats/model_config.h"

namespace sbits::quantizer {
namespace {

enum class Role { none, reads_stream, writes_stream, ffn_in, ffn_out, norm };

// What a tensor's rows and columns are, by name; `layer` is set for blk.N.* tensors.
Role role_of(const std::string& name, int& layer) {
  layer = -1;
  if (name == tensor_name_embedding() || name == tensor_name_output()) return Role::reads_stream;
  if (name == tensor_name_output_norm()) return Role::norm;
  if (name.rfind("blk.", 0) != 0) return Role::none;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos) return Role::none;
  layer = std::stoi(name.substr(4, dot - 4));
  const std::string kind = name.substr(dot + 1);
  if (kind == "attn_q" || kind == "attn_k" || kind == "attn_v") return Role::reads_stream;
  if (kind == "attn_output") return Role::writes_stream;
  if (kind == "ffn_gate" || kind == "ffn_up") return Role::ffn_in;
  if (kind == "ffn_down") return Role::ffn_out;
  if (kind == "attn_norm" || kind == "ffn_norm") return Role::norm;
  return Role::none;
}

Permutation sorted_by_score(const std::vector<double>& score) {
  Permutation p(score.size());
  std::iota(p.begin(), p.end(), 0);
  std::stable_sort(p.begin(), p.end(), [&](int32_t a, int32_t b) { return score[size_t(a)] > score[size_t(b)]; });
  return p;
}

}  // namespace

TensorPermutation permutation_of(const ModelPermutation& mp, const std::string& name) {
  int layer = -1;
  const Permutation* hidden = mp.hidden.empty() ? nullptr : &mp.hidden;
  auto ffn = [&]() -> const Permutation* {
    return layer >= 0 && size_t(layer) < mp.ffn.size() && !mp.ffn[size_t(layer)].empty() ? &mp.ffn[size_t(layer)]
                                                                                        : nullptr;
  };
  switch (role_of(name, layer)) {
    case Role::reads_stream: return {nullptr, hidden};
    case Role::writes_stream: return {hidden, nullptr};
    case Role::ffn_in: return {ffn(), hidden};
    case Role::ffn_out: return {hidden, ffn()};
    case Role::norm: return {nullptr, hidden};
    case Role::none: break;
  }
  return {};
}

ReorderPlanner::ReorderPlanner(int dim, int ffn_dim, int n_layers)
    : hidden_(size_t(dim), 0.0), ffn_(size_t(n_layers), std::vector<double>(size_t(ffn_dim), 0.0)) {}

void ReorderPlanner::add(const std::string& name, const float* w, int64_t rows, int64_t cols,
                         const TensorSensitivity& s) {
  int layer = -1;
  const Role role = role_of(name, layer);
  if (role == Role::none || role == Role::norm) return;
  std::vector<double> row_score(size_t(rows), 0.0), col_score(size_t(cols), 0.0);
  double total = 0.0;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      const double x = w[i * cols + j];
      const double v = double(s.r[size_t(i)]) * double(s.c[size_t(j)]) * x * x;
      row_score[size_t(i)] += v;
      col_score[size_t(j)] += v;
      total += v;
    }
  }
  if (!(total > 0.0)) return;
  auto add_to = [total](std::vector<double>& dst, const std::vector<double>& src) {
    if (dst.size() != src.size()) throw QuantizerError("reorder: channel count mismatch");
    for (size_t k = 0; k < dst.size(); ++k) dst[k] += src[k] / total;
  };
  const bool in_layer = layer >= 0 && size_t(layer) < ffn_.size();
  if (role == Role::reads_stream || role == Role::ffn_in) add_to(hidden_, col_score);
  if (role == Role::writes_stream || role == Role::ffn_out) add_to(hidden_, row_score);
  if (role == Role::ffn_in && in_layer) add_to(ffn_[size_t(layer)], row_score);
  if (role == Role::ffn_out && in_layer) add_to(ffn_[size_t(layer)], col_score);
}

ModelPermutation ReorderPlanner::plan() const {
  ModelPermutation mp;
  mp.hidden = sorted_by_score(hidden_);
  for (const auto& f : ffn_) mp.ffn.push_back(sorted_by_score(f));
  return mp;
}

void permute_matrix(const float* w, int64_t rows, int64_t cols, const TensorPermutation& tp, float* out) {
  if ((tp.rows && int64_t(tp.rows->size()) != rows) || (tp.cols && int64_t(tp.cols->size()) != cols))
    throw QuantizerError("reorder: permutation length does not match the matrix");
  for (int64_t p = 0; p < rows; ++p) {
    const float* src = w + (tp.rows ? int64_t((*tp.rows)[size_t(p)]) : p) * cols;
    float* dst = out + p * cols;
    if (!tp.cols) {
      std::memcpy(dst, src, size_t(cols) * sizeof(float));
    } else {
      for (int64_t q = 0; q < cols; ++q) dst[q] = src[(*tp.cols)[size_t(q)]];
    }
  }
}

void permute_elements(const uint8_t* in, size_t elem_bytes, const Permutation& perm, uint8_t* out) {
  for (size_t p = 0; p < perm.size(); ++p) std::memcpy(out + p * elem_bytes, in + size_t(perm[p]) * elem_bytes, elem_bytes);
}

std::vector<float> permute_vector(const std::vector<float>& v, const Permutation* perm) {
  if (!perm) return v;
  if (perm->size() != v.size()) throw QuantizerError("reorder: permutation length does not match the vector");
  std::vector<float> out(v.size());
  for (size_t p = 0; p < perm->size(); ++p) out[p] = v[size_t((*perm)[p])];
  return out;
}

}  // namespace sbits::quantizer
