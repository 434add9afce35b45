#include "quantizer/grad_stats.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <map>

#include "quantizer/backprop.h"
#include "quantizer/tile_quant.h"

namespace sbits::quantizer {

namespace {

// Sums over tokens, in double (T up to millions of squares of O(1e-3) gradients).
struct LinearSums {
  std::vector<double> d2;  // [out]: sum_t delta_ti^2
  std::vector<double> x2;  // [in]:  sum_t x_tj^2
};

class Accumulator final : public GradObserver {
 public:
  Accumulator(const ModelConfig& c, bool exact_classifier) : config_(c), exact_classifier_(exact_classifier) {
    emb_rows_.assign(c.vocab_size, 0.0);
    emb_count_.assign(c.vocab_size, 0);
    emb_cols_.assign(c.dim, 0.0);
  }

  void on_linear(int layer, LinearKind kind, int, int n, const float* x, int in, const float* delta,
                 int out) override {
    LinearSums& s = sums_[linear_tensor_name(config_, layer, kind) + (kind == LinearKind::classifier ? "#cls" : "")];
    s.d2.resize(size_t(out), 0.0);
    s.x2.resize(size_t(in), 0.0);
    if (kind == LinearKind::classifier && exact_classifier_)
      add_ggn(delta, n, out, s.d2.data());
    else
      add_squares(delta, n, out, s.d2.data());
    add_squares(x, n, in, s.x2.data());
  }

  void on_embedding(const int32_t* tokens, int n, const float* grad, int dim) override {
    for (int t = 0; t < n; ++t) {
      const float* g = grad + size_t(t) * dim;
      double ss = 0;
      for (int j = 0; j < dim; ++j) {
        const double v = double(g[j]) * g[j];
        ss += v;
        emb_cols_[size_t(j)] += v;
      }
      emb_rows_[size_t(tokens[t])] += ss / dim;
      ++emb_count_[size_t(tokens[t])];
    }
  }

  GradSensitivity linear_result(const std::string& key, const std::string& name, size_t T) const {
    auto it = sums_.find(key);
    if (it == sums_.end()) throw QuantizerError(fmt::format("grad stats: no gradients were seen for {}", key));
    GradSensitivity s;
    s.name = name;
    s.rows = int64_t(it->second.d2.size());
    s.cols = int64_t(it->second.x2.size());
    for (double v : it->second.d2) s.r.push_back(float(0.5 * v / double(T)));
    for (double v : it->second.x2) s.c.push_back(float(v / double(T)));
    return s;
  }

  GradSensitivity embedding_result(size_t T, UnseenTokens unseen) const {
    GradSensitivity s;
    s.name = tensor_name_embedding();
    s.rows = int64_t(config_.vocab_size);
    s.cols = int64_t(config_.dim);
    double col_mean = 0, all = 0;
    for (double v : emb_cols_) col_mean += v;
    col_mean /= double(emb_cols_.size());
    for (double v : emb_cols_) s.c.push_back(float(col_mean > 0 ? v / col_mean : 1.0));
    size_t once = 0, never = 0;
    for (size_t k = 0; k < emb_rows_.size(); ++k) {
      all += emb_rows_[k];
      once += emb_count_[k] == 1;
      never += emb_count_[k] == 0;
    }
    const double gbar_all = all / double(T);
    const double p0 = unseen == UnseenTokens::good_turing && never > 0 ? double(once) / double(T) : 0.0;
    for (size_t k = 0; k < emb_rows_.size(); ++k) {
      const uint64_t n = emb_count_[k];
      // r_k = 1/2 p_k gbar_k; for seen tokens p_k gbar_k = (1 - p0) (count/T) (sum/count).
      const double r = n > 0 ? 0.5 * (1.0 - p0) * emb_rows_[k] / double(T) : 0.5 * p0 / double(never) * gbar_all;
      s.r.push_back(float(r));
    }
    return s;
  }

 private:
  static void add_squares(const float* a, int n, int width, double* sum) {
    for (int t = 0; t < n; ++t) {
      const float* row = a + size_t(t) * width;
      for (int j = 0; j < width; ++j) sum[j] += double(row[j]) * row[j];
    }
  }

  // The classifier's Gauss-Newton diagonal p_i (1 - p_i) from delta = p - onehot(any target):
  // |delta_i| is p_i or 1 - p_i, and u (1 - u) is the same for both. Exact, where squaring a
  // sampled delta estimates it with a variance that hides tokens of p ~ 1e-6 entirely.
  static void add_ggn(const float* d, int n, int width, double* sum) {
    for (int t = 0; t < n; ++t) {
      const float* row = d + size_t(t) * width;
      for (int j = 0; j < width; ++j) {
        const double u = std::abs(double(row[j]));
        sum[j] += u * (1.0 - u);
      }
    }
  }

  const ModelConfig& config_;
  bool exact_classifier_;
  std::map<std::string, LinearSums> sums_;
  std::vector<double> emb_rows_, emb_cols_;
  std::vector<uint64_t> emb_count_;
};

// The tied token embedding: merge the classifier's and the embedding's factored Fishers.
GradSensitivity merge_tied(const GradSensitivity& a, const GradSensitivity& b) {
  auto sum = [](const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += x;
    return s;
  };
  const double ma = sum(a.c) / double(a.c.size()), mb = sum(b.c) / double(b.c.size());
  const double ra = sum(a.r), rb = sum(b.r);
  GradSensitivity s = a;
  const double total = ra * ma + rb * mb;
  for (size_t i = 0; i < s.r.size(); ++i) s.r[i] = float(a.r[i] * ma + b.r[i] * mb);
  for (size_t j = 0; j < s.c.size(); ++j) s.c[j] = float(total > 0 ? (ra * a.c[j] + rb * b.c[j]) / total : 1.0);
  return s;
}

}  // namespace

GradStatsResult collect_grad_sensitivity(const std::string& model_path, std::span<const int32_t> tokens,
                                         const GradStatsOptions& options) {
  if (tokens.size() < 2)
    throw QuantizerError(fmt::format("collect_grad_sensitivity: need at least 2 tokens, got {}", tokens.size()));
  if (options.seq_len < 1)
    throw QuantizerError(fmt::format("collect_grad_sensitivity: seq_len must be >= 1, got {}", options.seq_len));
  std::vector<std::vector<int32_t>> windows;
  for (size_t s = 0; s + 1 < tokens.size(); s += size_t(options.seq_len)) {
    const size_t n = std::min(size_t(options.seq_len), tokens.size() - 1 - s);
    windows.emplace_back(tokens.begin() + ptrdiff_t(s), tokens.begin() + ptrdiff_t(s + n + 1));
  }
  return collect_grad_sensitivity(model_path, windows, options);
}

GradStatsResult collect_grad_sensitivity(const std::string& model_path,
                                         const std::vector<std::vector<int32_t>>& windows,
                                         const GradStatsOptions& options) {
  auto file = SbitsFile::open(model_path);
  LlamaBackprop bp(*file, {.threads = options.threads, .targets = options.targets, .seed = options.seed});
  const ModelConfig& c = bp.config();
  Accumulator acc(c, options.targets == GradTargets::sampled);
  size_t total = 0;
  for (const auto& w : windows) total += w.size() > 1 ? w.size() - 1 : 0;
  if (options.max_tokens > 0) total = std::min(total, options.max_tokens);
  if (total == 0) throw QuantizerError("collect_grad_sensitivity: no window holds 2 or more tokens");
  const auto t0 = std::chrono::steady_clock::now();
  GradStatsResult res;
  double loss = 0;
  for (const auto& w : windows) {
    if (res.tokens >= total) break;
    if (w.size() < 2) continue;
    const size_t n = std::min(w.size() - 1, total - res.tokens);
    loss += bp.loss_and_gradients(std::span(w).first(n + 1), acc);
    res.tokens += n;
    if (options.progress) options.progress(res.tokens, total);
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.mean_loss = loss / double(res.tokens);
  const std::string cls = linear_tensor_name(c, 0, LinearKind::classifier);
  for (const TensorInfo& t : file->tensors()) {
    if (t.shape.size() != 2) continue;
    if (t.name == tensor_name_embedding()) {
      GradSensitivity e = acc.embedding_result(res.tokens, options.unseen);
      res.tensors.push_back(c.tied_embeddings ? merge_tied(acc.linear_result(cls + "#cls", t.name, res.tokens), e) : e);
    } else {
      res.tensors.push_back(acc.linear_result(t.name == cls ? cls + "#cls" : t.name, t.name, res.tokens));
    }
  }
  return res;
}

double predicted_delta(const GradSensitivity& s, const float* a, const float* b, int64_t ld, int64_t r0, int64_t r1,
                       int64_t c0, int64_t c1) {
  double total = 0;
  for (int64_t i = r0; i < r1; ++i) {
    double row = 0;
    for (int64_t j = c0; j < c1; ++j) {
      const double d = double(a[i * ld + j]) - double(b[i * ld + j]);
      row += double(s.c[size_t(j)]) * d * d;
    }
    total += double(s.r[size_t(i)]) * row;
  }
  return total;
}

}  // namespace sbits::quantizer
