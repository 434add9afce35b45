#include "quantizer/backprop.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "engine/backends.h"
#include "formats/dtype_convert.h"
#include "quantizer/backprop_ops.h"
#include "quantizer/parallel.h"
#include "quantizer/tile_quant.h"

namespace sbits::quantizer {

namespace {

// Rows of logits formed at once: 64 x vocab floats (8 MiB at vocab 32000) instead of n x vocab.
constexpr int kClassifierChunk = 64;

kernels::WeightType weight_type(Layout l) {
  switch (l) {
    case Layout::f32: return kernels::WeightType::f32;
    case Layout::f16: return kernels::WeightType::f16;
    case Layout::bf16: return kernels::WeightType::bf16;
    default: break;
  }
  throw QuantizerError(fmt::format("backprop: layout {} is not a float layout", layout_name(uint32_t(l))));
}

Layout layout_of(kernels::WeightType t) {
  return t == kernels::WeightType::f32 ? Layout::f32 : t == kernels::WeightType::f16 ? Layout::f16 : Layout::bf16;
}

size_t elem_bytes(kernels::WeightType t) { return t == kernels::WeightType::f32 ? 4 : 2; }

// dst[c][r] = src[r][c] for elements of `eb` bytes, in 32 x 32 blocks so that both sides stay
// in cache lines already loaded.
void transpose_bytes(const uint8_t* src, int64_t rows, int64_t cols, size_t eb, uint8_t* dst) {
  constexpr int64_t B = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += B)
    for (int64_t c0 = 0; c0 < cols; c0 += B) {
      const int64_t r1 = std::min(rows, r0 + B), c1 = std::min(cols, c0 + B);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) std::memcpy(dst + (c * rows + r) * eb, src + (r * cols + c) * eb, eb);
    }
}

}  // namespace

const char* linear_kind_name(LinearKind k) {
  static const char* const names[] = {"attn_q",   "attn_k", "attn_v",   "attn_output",
                                      "ffn_gate", "ffn_up", "ffn_down", "output"};
  return names[int(k)];
}

std::string linear_tensor_name(const ModelConfig& c, int layer, LinearKind k) {
  if (k == LinearKind::classifier) return c.tied_embeddings ? tensor_name_embedding() : tensor_name_output();
  return tensor_name_layer(uint64_t(layer), linear_kind_name(k));
}

struct LlamaBackprop::Matrix {
  const TensorInfo* info = nullptr;
  int64_t rows = 0, cols = 0;
  kernels::WeightType type = kernels::WeightType::f32;
  const uint8_t* data = nullptr;       // the file's bytes, or override's
  std::vector<float> override_data;    // set_override's copy
  std::unique_ptr<kernels::Weight> w;  // uploaded from `data` (in place on the CPU backend)
};

// One layer's intermediates (forward) and gradients (backward), reused across layers.
struct LlamaBackprop::LayerActs {
  std::vector<float> a, rs1, q, k, v, att, lse, xmid, b, rs2, gate, up, m;
  std::vector<float> dm, dgate, dup, db, datt, dq, dk, dv, tmp;
  void resize(const ModelConfig& c, int n) {
    const auto N = size_t(n), dim = size_t(c.dim), qd = size_t(c.n_heads * c.head_dim),
               kvd = size_t(c.n_kv_heads * c.head_dim), ffn = size_t(c.ffn_dim);
    for (auto* v_ : {&a, &xmid, &b, &db, &tmp}) v_->resize(N * dim);
    for (auto* v_ : {&rs1, &rs2}) v_->resize(N);
    for (auto* v_ : {&q, &att, &datt, &dq}) v_->resize(N * qd);
    for (auto* v_ : {&k, &v, &dk, &dv}) v_->resize(N * kvd);
    for (auto* v_ : {&gate, &up, &m, &dm, &dgate, &dup}) v_->resize(N * ffn);
    lse.resize(N * c.n_heads);
  }
};

LlamaBackprop::LlamaBackprop(const SbitsFile& file, const BackpropOptions& options)
    : file_(file), threads_(std::max(1, options.threads)), grad_targets_(options.targets), seed_(options.seed) {
  config_ = ModelConfig::from_metadata(file.metadata());
  config_.validate();
  validate_model_tensors(file, config_);
  be_ = make_backend("cpu", {.threads = threads_});
  for (const TensorInfo& t : file.tensors()) {
    if (!is_float_layout(Layout(t.layout)))
      throw FormatError(fmt::format("{}: tensor {} has layout {}; gradients need the float (f32/f16/bf16) model",
                                    file.path(), t.name, layout_name(t.layout) ? layout_name(t.layout) : "unknown"));
    if (t.shape.size() == 1) {
      std::vector<float>& v = norms_[t.name];
      v.resize(t.shape[0]);
      convert_floats(Layout(t.layout), Layout::f32, file.bytes(t).data(), reinterpret_cast<uint8_t*>(v.data()),
                     v.size(), nullptr);
      continue;
    }
    auto m = std::make_unique<Matrix>();
    m->info = &t;
    m->rows = int64_t(t.shape[0]);
    m->cols = int64_t(t.shape[1]);
    m->type = weight_type(Layout(t.layout));
    m->data = file.bytes(t).data();
    m->w = be_->upload({m->type, m->rows, m->cols, m->data, size_t(t.size)});
    matrices_[t.name] = std::move(m);
  }
  acts_ = std::make_unique<LayerActs>();
}

LlamaBackprop::~LlamaBackprop() = default;

const LlamaBackprop::Matrix& LlamaBackprop::matrix(const std::string& name) const {
  auto it = matrices_.find(name);
  if (it == matrices_.end()) throw QuantizerError(fmt::format("backprop: {} has no matrix {}", file_.path(), name));
  return *it->second;
}

void LlamaBackprop::set_override(const std::string& name, const float* w, size_t count) {
  auto it = matrices_.find(name);
  if (it == matrices_.end())
    throw QuantizerError(fmt::format("set_override: {} has no 2-D tensor {}", file_.path(), name));
  Matrix& m = *it->second;
  if (w) {
    if (count != size_t(m.rows * m.cols))
      throw QuantizerError(fmt::format("set_override({}): expected {} x {} = {} floats, got {}", name, m.rows, m.cols,
                                       m.rows * m.cols, count));
    m.override_data.assign(w, w + count);
    m.type = kernels::WeightType::f32;
    m.data = reinterpret_cast<const uint8_t*>(m.override_data.data());
  } else {
    m.override_data = {};
    m.type = weight_type(Layout(m.info->layout));
    m.data = file_.bytes(*m.info).data();
  }
  m.w = be_->upload({m.type, m.rows, m.cols, m.data, size_t(m.rows * m.cols) * elem_bytes(m.type)});
}

const kernels::Weight& LlamaBackprop::transposed(const Matrix& m, std::unique_ptr<kernels::Weight>& slot,
                                                 std::vector<uint8_t>& bytes) {
  const size_t eb = elem_bytes(m.type);
  slot.reset();
  bytes.resize(size_t(m.rows * m.cols) * eb);
  transpose_bytes(m.data, m.rows, m.cols, eb, bytes.data());
  slot = be_->upload({m.type, m.cols, m.rows, bytes.data(), bytes.size()});
  return *slot;
}

void LlamaBackprop::matmul(const kernels::Weight& w, const float* x, int n, float* y, bool accumulate) {
  const size_t nx = size_t(n) * size_t(w.cols), ny = size_t(n) * size_t(w.rows);
  if (!bx_ || bx_->count < nx) bx_ = be_->alloc(nx);
  if (!by_ || by_->count < ny) by_ = be_->alloc(ny);
  be_->write(*bx_, x, nx);
  if (accumulate) be_->write(*by_, y, ny);
  be_->matmul(w, *bx_, n, *by_, accumulate);
  be_->read(*by_, y, ny);
}

// y (+)= x W^T for the linear layer (layer, kind), plus the probe when it points here.
void LlamaBackprop::linear(int layer, LinearKind kind, const float* x, int n, float* y) {
  const Matrix& m = matrix(linear_tensor_name(config_, layer, kind));
  const bool residual = kind == LinearKind::attn_output || kind == LinearKind::ffn_down;
  matmul(*m.w, x, n, y, residual);
  // The classifier's probe is applied by head(), which knows the chunk's first row.
  if (probe_ && !probe_->embedding && probe_->kind == kind && kind != LinearKind::classifier &&
      probe_->layer == layer && probe_->row < n)
    y[size_t(probe_->row) * size_t(m.rows) + size_t(probe_->col)] += probe_->value;
}

void LlamaBackprop::embed(std::span<const int32_t> ids, float* x) {
  const Matrix& m = matrix(tensor_name_embedding());
  const size_t dim = config_.dim, eb = elem_bytes(m.type);
  const Layout l = layout_of(m.type);
  for (size_t t = 0; t < ids.size(); ++t)
    convert_floats(l, Layout::f32, m.data + size_t(ids[t]) * dim * eb, reinterpret_cast<uint8_t*>(x + t * dim), dim,
                   nullptr);
  if (probe_ && probe_->embedding && size_t(probe_->row) < ids.size())
    x[size_t(probe_->row) * dim + size_t(probe_->col)] += probe_->value;
}

void LlamaBackprop::layer_forward(int l, const float* x_in, int n, LayerActs& a, float* x_out) {
  const ModelConfig& c = config_;
  const int dim = int(c.dim);
  const auto eps = float(c.norm_eps);
  const bp::AttnShape shape{int(c.n_heads), int(c.n_kv_heads), int(c.head_dim)};
  a.resize(c, n);
  bp::rmsnorm_forward(x_in, norms_.at(tensor_name_layer(l, "attn_norm")).data(), n, dim, eps, a.a.data(), a.rs1.data());
  linear(l, LinearKind::attn_q, a.a.data(), n, a.q.data());
  linear(l, LinearKind::attn_k, a.a.data(), n, a.k.data());
  linear(l, LinearKind::attn_v, a.a.data(), n, a.v.data());
  bp::rope(a.q.data(), n, shape.n_heads, shape.head_dim, c.rope_theta, c.rope, false);
  bp::rope(a.k.data(), n, shape.n_kv_heads, shape.head_dim, c.rope_theta, c.rope, false);
  bp::attention_forward(a.q.data(), a.k.data(), a.v.data(), n, shape, a.att.data(), a.lse.data(), threads_);
  std::copy(x_in, x_in + size_t(n) * dim, a.xmid.begin());
  linear(l, LinearKind::attn_output, a.att.data(), n, a.xmid.data());
  bp::rmsnorm_forward(a.xmid.data(), norms_.at(tensor_name_layer(l, "ffn_norm")).data(), n, dim, eps, a.b.data(),
                      a.rs2.data());
  linear(l, LinearKind::ffn_gate, a.b.data(), n, a.gate.data());
  linear(l, LinearKind::ffn_up, a.b.data(), n, a.up.data());
  bp::swiglu_forward(a.gate.data(), a.up.data(), a.m.size(), a.m.data());
  std::copy(a.xmid.begin(), a.xmid.end(), x_out);
  linear(l, LinearKind::ffn_down, a.m.data(), n, x_out);
}

// dx: in, d(loss)/d(layer output); out, d(loss)/d(layer input). `a` holds the layer's forward.
void LlamaBackprop::layer_backward(int l, const float* x_in, LayerActs& a, int n, float* dx, GradObserver& obs) {
  const ModelConfig& c = config_;
  const int dim = int(c.dim), ffn = int(c.ffn_dim), qd = int(c.n_heads * c.head_dim),
            kvd = int(c.n_kv_heads * c.head_dim);
  const bp::AttnShape shape{int(c.n_heads), int(c.n_kv_heads), int(c.head_dim)};
  std::unique_ptr<kernels::Weight> wt;  // one transposed matrix at a time
  std::vector<uint8_t> wt_bytes;
  auto back = [&](LinearKind k, const float* delta, float* dinput, bool accumulate) {
    matmul(transposed(matrix(linear_tensor_name(c, l, k)), wt, wt_bytes), delta, n, dinput, accumulate);
  };
  // FFN: x_out = xmid + down(silu(gate(b)) * up(b)), b = norm(xmid).
  obs.on_linear(l, LinearKind::ffn_down, 0, n, a.m.data(), ffn, dx, dim);
  back(LinearKind::ffn_down, dx, a.dm.data(), false);
  bp::swiglu_backward(a.gate.data(), a.up.data(), a.dm.data(), a.dm.size(), a.dgate.data(), a.dup.data());
  obs.on_linear(l, LinearKind::ffn_gate, 0, n, a.b.data(), dim, a.dgate.data(), ffn);
  obs.on_linear(l, LinearKind::ffn_up, 0, n, a.b.data(), dim, a.dup.data(), ffn);
  back(LinearKind::ffn_gate, a.dgate.data(), a.db.data(), false);
  back(LinearKind::ffn_up, a.dup.data(), a.db.data(), true);
  bp::rmsnorm_backward(a.xmid.data(), norms_.at(tensor_name_layer(l, "ffn_norm")).data(), a.rs2.data(), a.db.data(), n,
                       dim, dx, true);
  // Attention: xmid = x_in + o(attn(rope(q(a)), rope(k(a)), v(a))), a = norm(x_in).
  obs.on_linear(l, LinearKind::attn_output, 0, n, a.att.data(), qd, dx, dim);
  back(LinearKind::attn_output, dx, a.datt.data(), false);
  bp::attention_backward(a.q.data(), a.k.data(), a.v.data(), a.att.data(), a.lse.data(), a.datt.data(), n, shape,
                         a.dq.data(), a.dk.data(), a.dv.data(), threads_);
  bp::rope(a.dq.data(), n, shape.n_heads, shape.head_dim, c.rope_theta, c.rope, true);
  bp::rope(a.dk.data(), n, shape.n_kv_heads, shape.head_dim, c.rope_theta, c.rope, true);
  obs.on_linear(l, LinearKind::attn_q, 0, n, a.a.data(), dim, a.dq.data(), qd);
  obs.on_linear(l, LinearKind::attn_k, 0, n, a.a.data(), dim, a.dk.data(), kvd);
  obs.on_linear(l, LinearKind::attn_v, 0, n, a.a.data(), dim, a.dv.data(), kvd);
  back(LinearKind::attn_q, a.dq.data(), a.tmp.data(), false);
  back(LinearKind::attn_k, a.dk.data(), a.tmp.data(), true);
  back(LinearKind::attn_v, a.dv.data(), a.tmp.data(), true);
  bp::rmsnorm_backward(x_in, norms_.at(tensor_name_layer(l, "attn_norm")).data(), a.rs1.data(), a.tmp.data(), n, dim,
                       dx, true);
}

// Final norm, classifier and loss over targets[0..n-1], 64 rows at a time. With obs, also the
// classifier's (x, delta) and dx = d(loss)/d(x) (x: the last layer's output).
double LlamaBackprop::head(std::span<const int32_t> targets, const float* x, int n, std::vector<float>* logits,
                           ForwardCache* cache, GradObserver* obs, float* dx) {
  const ModelConfig& c = config_;
  const int dim = int(c.dim), vocab = int(c.vocab_size);
  std::vector<float> h(size_t(n) * dim), rs(static_cast<size_t>(n)), z(size_t(kClassifierChunk) * vocab), dh;
  bp::rmsnorm_forward(x, norms_.at(tensor_name_output_norm()).data(), n, dim, float(c.norm_eps), h.data(), rs.data());
  if (logits) logits->resize(size_t(n) * vocab);
  if (cache) {
    cache->final_h = h;
    cache->lse.resize(static_cast<size_t>(n));
    cache->target_logit.resize(static_cast<size_t>(n));
  }
  const Matrix& cls = matrix(linear_tensor_name(c, 0, LinearKind::classifier));
  if (obs) dh.resize(size_t(n) * dim);
  // Keys for sampled targets: distinct per (seed, sequence, position) and non-negative.
  const int64_t sample_key = obs && grad_targets_ == GradTargets::sampled
                                 ? int64_t((seed_ * 0x100000000ull + sequences_ * 0x100000ull) >> 1)
                                 : -1;
  double total = 0;
  for (int r0 = 0; r0 < n; r0 += kClassifierChunk) {
    const int m = std::min(kClassifierChunk, n - r0);
    float* zc = z.data();
    linear(int(c.n_layers), LinearKind::classifier, h.data() + size_t(r0) * dim, m, zc);
    if (probe_ && !probe_->embedding && probe_->kind == LinearKind::classifier && probe_->row >= r0 &&
        probe_->row < r0 + m)
      zc[size_t(probe_->row - r0) * vocab + size_t(probe_->col)] += probe_->value;
    if (logits) std::copy(zc, zc + size_t(m) * vocab, logits->begin() + ptrdiff_t(size_t(r0) * vocab));
    // Rows are independent: split the chunk's softmax (vocab exps per row) over the threads.
    const int parts = std::min(threads_, m);
    std::vector<double> part_loss(static_cast<size_t>(parts));
    parallel_for(parts, threads_, [&](int64_t p) {
      const int b = int(p * m / parts), e = int((p + 1) * m / parts);
      part_loss[size_t(p)] = bp::cross_entropy(zc + size_t(b) * vocab, targets.data() + r0 + b, e - b, vocab,
                                               obs != nullptr, cache ? cache->lse.data() + r0 + b : nullptr,
                                               cache ? cache->target_logit.data() + r0 + b : nullptr,
                                               sample_key < 0 ? -1 : sample_key + r0 + b);
    });
    for (double v : part_loss) total += v;
    if (obs) {
      obs->on_linear(int(c.n_layers), LinearKind::classifier, r0, m, h.data() + size_t(r0) * dim, dim, zc, vocab);
      bp::matmul_dw(cls.data, layout_of(cls.type), cls.rows, cls.cols, zc, m, dh.data() + size_t(r0) * dim, threads_);
    }
  }
  if (obs) bp::rmsnorm_backward(x, norms_.at(tensor_name_output_norm()).data(), rs.data(), dh.data(), n, dim, dx, false);
  return total;
}

std::span<const int32_t> LlamaBackprop::checked(std::span<const int32_t> tokens) const {
  if (tokens.size() < 2)
    throw QuantizerError(fmt::format("backprop: a sequence needs at least 2 tokens (inputs and targets), got {}",
                                     tokens.size()));
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || uint64_t(tokens[i]) >= config_.vocab_size)
      throw QuantizerError(fmt::format("backprop: token {} at position {} is outside the vocabulary [0, {})",
                                       tokens[i], i, config_.vocab_size));
  return tokens;
}

double LlamaBackprop::loss(std::span<const int32_t> tokens, std::vector<float>* logits, ForwardCache* cache) {
  checked(tokens);
  const int n = int(tokens.size()) - 1;
  const size_t sz = size_t(n) * config_.dim;
  ForwardCache local;
  ForwardCache& fc = cache ? *cache : local;
  fc.n = n;
  fc.residual.assign(config_.n_layers + 1, std::vector<float>(sz));
  embed(tokens.first(static_cast<size_t>(n)), fc.residual[0].data());
  for (int l = 0; l < int(config_.n_layers); ++l)
    layer_forward(l, fc.residual[size_t(l)].data(), n, *acts_, fc.residual[size_t(l) + 1].data());
  return head(tokens.subspan(1), fc.residual.back().data(), n, logits, cache, nullptr, nullptr);
}

double LlamaBackprop::forward_from(std::span<const int32_t> tokens, const ForwardCache& cache, int layer) {
  checked(tokens);
  const int n = int(tokens.size()) - 1;
  if (cache.n != n || layer < 0 || layer > int(config_.n_layers) || cache.residual.size() != config_.n_layers + 1)
    throw QuantizerError(fmt::format("forward_from: layer {} of {} with a cache of {} positions for {} tokens", layer,
                                     config_.n_layers, cache.n, n));
  std::vector<float> x = cache.residual[size_t(layer)], y(x.size());
  for (int l = layer; l < int(config_.n_layers); ++l) {
    layer_forward(l, x.data(), n, *acts_, y.data());
    std::swap(x, y);
  }
  return head(tokens.subspan(1), x.data(), n, nullptr, nullptr, nullptr, nullptr);
}

double LlamaBackprop::loss_and_gradients(std::span<const int32_t> tokens, GradObserver& obs) {
  checked(tokens);
  const int n = int(tokens.size()) - 1;
  const size_t sz = size_t(n) * config_.dim;
  std::vector<std::vector<float>> res(config_.n_layers + 1, std::vector<float>(sz));
  embed(tokens.first(static_cast<size_t>(n)), res[0].data());
  for (int l = 0; l < int(config_.n_layers); ++l)
    layer_forward(l, res[size_t(l)].data(), n, *acts_, res[size_t(l) + 1].data());
  std::vector<float> dx(sz), scratch(sz);
  const double total = head(tokens.subspan(1), res.back().data(), n, nullptr, nullptr, &obs, dx.data());
  // Backward, recomputing each layer's intermediates from its saved input (checkpointing).
  for (int l = int(config_.n_layers) - 1; l >= 0; --l) {
    layer_forward(l, res[size_t(l)].data(), n, *acts_, scratch.data());
    layer_backward(l, res[size_t(l)].data(), *acts_, n, dx.data(), obs);
  }
  obs.on_embedding(tokens.data(), n, dx.data(), int(config_.dim));
  ++sequences_;
  return total;
}

}  // namespace sbits::quantizer
