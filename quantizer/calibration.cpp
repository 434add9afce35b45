#include "quantizer/calibration.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/perplexity.h"
#include "kernels/cpu/cpu_backend.h"
#include "quantizer/parallel.h"
#include "quantizer/tile_quant.h"

namespace sbits::quantizer {
namespace {

constexpr int kBatchRows = 64;  // rows per forward call: the CPU backend's matmul is efficient from ~32

// Accumulates every linear input into its InputMoments.
class StatsObserver final : public ForwardObserver {
 public:
  StatsObserver(CalibrationStats& stats, const CalibrationOptions& o) : stats_(stats), o_(o) {}
  void on_linear_input(size_t layer, LinearInput which, const float* x, int n, int width) override {
    InputMoments& m = stats_.layers.at(layer)[size_t(which)];
    if (m.width != width) {
      throw QuantizerError("calibration: input " + std::string(kLinearInputNames[size_t(which)]) + " of layer " +
                           std::to_string(layer) + " has width " + std::to_string(width) + ", expected " +
                           std::to_string(m.width));
    }
    const std::vector<int32_t>* perm = o_.permutation ? o_.permutation(layer, which) : nullptr;
    if (perm && !perm->empty()) {
      if (perm->size() != size_t(width)) throw QuantizerError("calibration: permutation length != input width");
      permuted_.resize(size_t(n) * size_t(width));
      for (int t = 0; t < n; ++t)
        for (int p = 0; p < width; ++p)
          permuted_[size_t(t) * size_t(width) + size_t(p)] = x[size_t(t) * size_t(width) + size_t((*perm)[size_t(p)])];
      x = permuted_.data();
    }
    m.accumulate(x, n, o_.threads);
  }

 private:
  CalibrationStats& stats_;
  const CalibrationOptions& o_;
  std::vector<float> permuted_;
};

// log-sum-exp minus the target logit, in double for the 32000-wide sum.
double token_nll(const float* logits, int vocab, int32_t target) {
  const float mx = *std::max_element(logits, logits + vocab);
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - double(mx));
  return std::log(sum) + double(mx) - double(logits[target]);
}

}  // namespace

void InputMoments::init(int w, int b) {
  width = w;
  block = b;
  rows = 0;
  sq.assign(size_t(w), 0.0);
  const size_t nb = b > 0 ? size_t((w + b - 1) / b) : 0;
  blocks.assign(nb * size_t(b) * size_t(b), 0.0f);
}

void InputMoments::accumulate(const float* x, int n, int threads) {
  for (int t = 0; t < n; ++t) {
    const float* xr = x + size_t(t) * size_t(width);
    for (int j = 0; j < width; ++j) sq[size_t(j)] += double(xr[j]) * double(xr[j]);
  }
  rows += uint64_t(n);
  if (block <= 0) return;
  const int nb = (width + block - 1) / block;
  parallel_for(nb, threads, [&](int64_t b) {
    const int c0 = int(b) * block, cn = std::min(block, width - c0);
    float* out = blocks.data() + size_t(b) * size_t(block) * size_t(block);
    for (int t = 0; t < n; ++t) {
      const float* xr = x + size_t(t) * size_t(width) + size_t(c0);
      for (int i = 0; i < cn; ++i) {
        const float xi = xr[i];
        float* o = out + size_t(i) * size_t(block);
        for (int j = 0; j < cn; ++j) o[j] += xi * xr[j];  // vectorizes over j
      }
    }
  });
}

std::vector<float> InputMoments::mean_sq() const {
  std::vector<float> m(sq.size());
  const double inv = rows ? 1.0 / double(rows) : 0.0;
  for (size_t j = 0; j < sq.size(); ++j) m[j] = float(sq[j] * inv);
  return m;
}

const InputMoments* CalibrationStats::input_of(const std::string& name) const {
  if (name == "output") return layers.empty() ? nullptr : &layers.back()[size_t(LinearInput::classifier)];
  if (name.rfind("blk.", 0) != 0) return nullptr;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos) return nullptr;
  const size_t layer = std::stoul(name.substr(4, dot - 4));
  if (layer + 1 >= layers.size()) return nullptr;
  const std::string kind = name.substr(dot + 1);
  LinearInput which;
  if (kind == "attn_q" || kind == "attn_k" || kind == "attn_v") which = LinearInput::attn_qkv;
  else if (kind == "attn_output") which = LinearInput::attn_output;
  else if (kind == "ffn_gate" || kind == "ffn_up") which = LinearInput::ffn_gate_up;
  else if (kind == "ffn_down") which = LinearInput::ffn_down;
  else return nullptr;
  return &layers[layer][size_t(which)];
}

std::vector<std::vector<int32_t>> calibration_windows(const Tokenizer& tok, std::string_view text, size_t tokens,
                                                      int seq_len) {
  const std::vector<int32_t> ids = perplexity_tokens(tok, text, PerplexityProtocol::docs);
  const size_t len = size_t(seq_len);
  if (seq_len < 2 || ids.size() < len) {
    throw QuantizerError("calibration text has " + std::to_string(ids.size()) + " tokens; at least one window of " +
                         std::to_string(seq_len) + " is needed");
  }
  const size_t available = ids.size() / len;
  const size_t want = std::clamp<size_t>((tokens + len - 1) / len, 1, available);
  // Evenly spaced windows cover the whole text (its topics), not just its beginning.
  std::vector<std::vector<int32_t>> windows;
  for (size_t i = 0; i < want; ++i) {
    const size_t start = (i * available / want) * len;
    windows.emplace_back(ids.begin() + ptrdiff_t(start), ids.begin() + ptrdiff_t(start + len));
  }
  return windows;
}

CalibrationStats calibrate(const Model& model, const std::vector<std::vector<int32_t>>& windows,
                           const CalibrationOptions& o, const std::function<void(size_t, size_t)>& progress) {
  const ModelConfig& c = model.config();
  CalibrationStats stats;
  stats.layers.resize(c.n_layers + 1);
  const int dim = int(c.dim), q_dim = int(c.n_heads * c.head_dim), ffn = int(c.ffn_dim);
  for (size_t l = 0; l < c.n_layers; ++l) {
    stats.layers[l][size_t(LinearInput::attn_qkv)].init(dim, o.block);
    stats.layers[l][size_t(LinearInput::attn_output)].init(q_dim, o.block);
    stats.layers[l][size_t(LinearInput::ffn_gate_up)].init(dim, o.block);
    stats.layers[l][size_t(LinearInput::ffn_down)].init(ffn, o.block);
  }
  stats.layers[c.n_layers][size_t(LinearInput::classifier)].init(dim, o.block);
  stats.token_counts.assign(c.vocab_size, 0);

  Forward fwd(model, kBatchRows);
  StatsObserver observer(stats, o);
  fwd.set_observer(&observer);
  const int seq = int(windows.empty() ? 0 : windows[0].size());
  auto cache = fwd.make_kv_cache(1, std::max(seq, 1), kernels::KvType::f32);
  std::vector<float> logits(size_t(kBatchRows) * c.vocab_size);
  std::vector<int32_t> logit_rows(kBatchRows);
  std::iota(logit_rows.begin(), logit_rows.end(), 0);
  double nll = 0.0;
  uint64_t predicted = 0;
  for (size_t w = 0; w < windows.size(); ++w) {
    const std::vector<int32_t>& ids = windows[w];
    for (int32_t t : ids) ++stats.token_counts.at(size_t(t));
    for (int s = 0; s < int(ids.size()); s += kBatchRows) {
      const int n = std::min(kBatchRows, int(ids.size()) - s);
      std::vector<kernels::RowInfo> rows(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) rows[size_t(i)] = {0, s + i};
      fwd.run(*cache, std::span(ids).subspan(size_t(s), size_t(n)), rows, std::span(logit_rows).first(size_t(n)),
              logits.data());
      for (int i = 0; i < n && s + i + 1 < int(ids.size()); ++i, ++predicted)
        nll += token_nll(logits.data() + size_t(i) * c.vocab_size, int(c.vocab_size), ids[size_t(s + i + 1)]);
    }
    stats.tokens += ids.size();
    if (progress) progress(w + 1, windows.size());
  }
  stats.loss = predicted ? nll / double(predicted) : 0.0;
  return stats;
}

double calibration_loss(const std::string& model_path, std::string_view text, size_t tokens, int seq_len,
                        int threads, uint64_t* tokens_used) {
  auto backend = kernels::make_cpu_backend(threads);
  auto model = Model::load(model_path, *backend);
  CalibrationOptions o;
  o.block = 0;
  o.threads = threads;
  const CalibrationStats s = calibrate(*model, calibration_windows(model->tokenizer(), text, tokens, seq_len), o);
  if (tokens_used) *tokens_used = s.tokens;
  return s.loss;
}

}  // namespace sbits::quantizer
