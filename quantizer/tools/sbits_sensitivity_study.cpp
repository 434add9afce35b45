// sbits-sensitivity-study: how well do the sensitivity models predict the real loss change of
// quantizing one tile? (docs/SENSITIVITY.md)
//
// The calibration text's token stream (engine/perplexity.h "docs" protocol) is cut in two
// disjoint parts: the first --eval-tokens predicted tokens measure the loss, the next
// --stats-tokens give the statistics of both models (no token is in both). For each sampled
// (tensor, tile, bits), the tile alone is quantized with the mse tile quantizer (h = E[x^2]),
// the mean loss over the eval tokens is recomputed with that one tile changed (resuming from
// the hidden states cached at the tensor's layer; the classifier's rows by an exact
// log-sum-exp update), and compared with
//   grad   r, c from quantizer/grad_stats.h (diagonal K-FAC Fisher; absolute nats)
//   proxy  r = 1 / sum_ij c_j W_ij^2, c_j = E[x_j^2]; token embedding r_k = (count_k + 1) /
//          (T + vocab), c = 1, normalised the same way (relative output error; unitless)
// Both predictions are sum_tile r_i c_j (W^_ij - W_ij)^2.
//
// Usage: sbits-sensitivity-study MODEL.sbits CALIB.txt [--eval-tokens 2048] [--stats-tokens 4096]
//          [--seq-len 512] [--eval-seq-len 256] [--samples 80] [--seed 1] [--threads 2] [--json F] [--md F] [--grad-only]
//          [--kinds attn_q,...,tok_embd,output] [--embd-eval-hit]
#include <sys/resource.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>

#include "engine/perplexity.h"
#include "engine/text/tokenizer.h"
#include "formats/dtype_convert.h"
#include "quantizer/backprop.h"
#include "quantizer/grad_stats.h"
#include "quantizer/tile_quant.h"

using namespace sbits;
using namespace sbits::quantizer;

namespace {

struct Args {
  std::string model, text, json_path, md_path;
  size_t eval_tokens = 2048, stats_tokens = 4096;
  int seq_len = 512, eval_seq_len = 256, samples = 80, threads = 2;
  uint32_t seed = 1;
  bool grad_only = false;
  std::vector<std::string> kinds = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate",
                                    "ffn_up", "ffn_down", "tok_embd", "output"};
  bool embd_hit = false;  // embedding tiles only among those holding a token of the eval windows
};

Args parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw QuantizerError(fmt::format("{} needs a value", s));
      return argv[++i];
    };
    if (s == "--eval-tokens") a.eval_tokens = std::stoul(next());
    else if (s == "--stats-tokens") a.stats_tokens = std::stoul(next());
    else if (s == "--seq-len") a.seq_len = std::stoi(next());
    else if (s == "--eval-seq-len") a.eval_seq_len = std::stoi(next());
    else if (s == "--samples") a.samples = std::stoi(next());
    else if (s == "--seed") a.seed = uint32_t(std::stoul(next()));
    else if (s == "--threads") a.threads = std::stoi(next());
    else if (s == "--json") a.json_path = next();
    else if (s == "--md") a.md_path = next();
    else if (s == "--grad-only") a.grad_only = true;
    else if (s == "--embd-eval-hit") a.embd_hit = true;
    else if (s == "--kinds") {
      a.kinds.clear();
      std::stringstream ks(next());
      for (std::string k; std::getline(ks, k, ',');) {
        static const std::string known = ",attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down,tok_embd,output,";
        if (known.find("," + k + ",") == std::string::npos)
          throw QuantizerError(fmt::format("--kinds: unknown kind '{}'; expected some of {}", k, known.substr(1)));
        a.kinds.push_back(k);
      }
    }
    else if (!s.empty() && s[0] == '-') throw QuantizerError(fmt::format("unknown option {}", s));
    else pos.push_back(s);
  }
  if (pos.size() != 2) throw QuantizerError("usage: sbits-sensitivity-study MODEL.sbits CALIB.txt [options]");
  a.model = pos[0];
  a.text = pos[1];
  return a;
}

// `count` windows of seq + 1 ids spread evenly over the stream (so that several documents are
// seen), skipping any that would overlap a range in `avoid`.
std::vector<std::vector<int32_t>> spread_windows(const std::vector<int32_t>& ids, size_t count, int seq, size_t offset,
                                                 const std::vector<std::pair<size_t, size_t>>& avoid,
                                                 std::vector<std::pair<size_t, size_t>>* taken) {
  std::vector<std::vector<int32_t>> w;
  const size_t len = size_t(seq) + 1, stride = ids.size() / std::max<size_t>(count, 1);
  for (size_t i = 0; i < count; ++i) {
    size_t s = offset + i * stride;
    for (const auto& [b, e] : avoid)
      if (s < e && s + len > b) s = e;
    if (s + len > ids.size()) throw QuantizerError("the calibration text is too short for the requested windows");
    w.emplace_back(ids.begin() + ptrdiff_t(s), ids.begin() + ptrdiff_t(s + len));
    if (taken) taken->push_back({s, s + len});
  }
  return w;
}

std::vector<float> load_f32(const SbitsFile& f, const std::string& name) {
  const TensorInfo& t = f.get(name);
  std::vector<float> w(t.element_count());
  convert_floats(Layout(t.layout), Layout::f32, f.bytes(t).data(), reinterpret_cast<uint8_t*>(w.data()), w.size(),
                 nullptr);
  return w;
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;
}

// The proxy of the lead's quantizer/sensitivity.h, restated here so the study does not depend
// on the allocator: r normalised so that sum_ij r_i c_j W_ij^2 = 1.
GradSensitivity proxy_of(const GradSensitivity& g, const std::vector<float>& w, bool embedding,
                         const std::vector<uint64_t>& counts, size_t T) {
  GradSensitivity p = g;
  if (embedding) {
    for (size_t k = 0; k < p.r.size(); ++k) p.r[k] = float(double(counts[k] + 1) / double(T + counts.size()));
    std::fill(p.c.begin(), p.c.end(), 1.0f);
  } else {
    std::fill(p.r.begin(), p.r.end(), 1.0f);
  }
  double s = 0;
  for (int64_t i = 0; i < p.rows; ++i) {
    double row = 0;
    for (int64_t j = 0; j < p.cols; ++j) row += double(p.c[size_t(j)]) * double(w[size_t(i * p.cols + j)]) * w[size_t(i * p.cols + j)];
    s += p.r[size_t(i)] * row;
  }
  for (float& r : p.r) r = float(r / s);
  return p;
}

struct Sample {
  std::string tensor, kind;
  int layer = -1;
  int64_t tile_r = 0, tile_c = 0;
  int bits = 0;
  double plus = 0, minus = 0;  // dL of W + E (the quantized tile) and of W - E (its mirror)
  double measured = 0;         // (plus + minus) / 2: the curvature part, first-order term cancelled
  double grad = 0, grad_mc = 0, proxy = 0, sq_err = 0;
};

int layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  return std::stoi(name.substr(4, name.find('.', 4) - 4));
}

// Measures and predicts the samples. `base` and `caches` hold the unchanged model's per-window
// losses and states.
class Study {
 public:
  Study(const SbitsFile& f, LlamaBackprop& bp, const std::vector<std::vector<int32_t>>& eval,
        std::vector<ForwardCache>& caches, std::vector<double>& base, size_t eval_tokens)
      : f_(f), bp_(bp), eval_(eval), caches_(caches), base_(base), T_(eval_tokens) {}

  double measure(const std::string& name, const std::vector<float>& w, const std::vector<float>& wq, int64_t r0,
                 int64_t r1) {
    const ModelConfig& c = bp_.config();
    if (name == tensor_name_output()) return classifier_delta(w, wq, r0, r1);
    bp_.set_override(name, wq.data(), wq.size());
    double delta = 0;
    const int layer = layer_of(name);
    for (size_t i = 0; i < eval_.size(); ++i) {
      if (layer < 0) {  // the token embedding: only windows holding one of the tile's tokens move
        bool hit = false;
        for (size_t t = 0; t + 1 < eval_[i].size(); ++t) hit |= eval_[i][t] >= r0 && eval_[i][t] < r1;
        if (!hit && !c.tied_embeddings) continue;
        delta += bp_.loss(eval_[i]) - base_[i];
      } else {
        delta += bp_.forward_from(eval_[i], caches_[i], layer) - base_[i];
      }
    }
    bp_.set_override(name, nullptr, 0);
    return delta / double(T_);
  }

 private:
  // Only logits of rows [r0, r1) change: dL_t = log1p((sum e^z' - sum e^z) e^-lse) - (z'_y - z_y),
  // exact, and without the n x vocab matmul.
  double classifier_delta(const std::vector<float>& w, const std::vector<float>& wq, int64_t r0, int64_t r1) {
    const auto dim = int64_t(bp_.config().dim);
    double delta = 0;
    for (size_t i = 0; i < eval_.size(); ++i) {
      const ForwardCache& fc = caches_[i];
      for (int t = 0; t < fc.n; ++t) {
        const float* h = fc.final_h.data() + size_t(t) * size_t(dim);
        const int32_t y = eval_[i][size_t(t) + 1];
        double s_old = 0, s_new = 0, dy = 0;
        for (int64_t k = r0; k < r1; ++k) {
          double zo = 0, zn = 0;
          for (int64_t j = 0; j < dim; ++j) {
            zo += double(h[j]) * w[size_t(k * dim + j)];
            zn += double(h[j]) * wq[size_t(k * dim + j)];
          }
          s_old += std::exp(zo - fc.lse[size_t(t)]);
          s_new += std::exp(zn - fc.lse[size_t(t)]);
          if (k == y) dy = zn - zo;
        }
        delta += std::log1p(s_new - s_old) - dy;
      }
    }
    return delta / double(T_);
  }

  const SbitsFile& f_;
  LlamaBackprop& bp_;
  const std::vector<std::vector<int32_t>>& eval_;
  std::vector<ForwardCache>& caches_;
  std::vector<double>& base_;
  size_t T_;
};

std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = 0.5 * double(i + j);
    i = j + 1;
  }
  return r;
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = double(a.size());
  const double ma = std::accumulate(a.begin(), a.end(), 0.0) / n, mb = std::accumulate(b.begin(), b.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0.0;
}

struct Corr {
  size_t n = 0, n_log = 0;
  double pearson = 0, spearman = 0, pearson_log = 0;
};

Corr correlate(const std::vector<Sample>& s, double Sample::*pred, double Sample::*target) {
  std::vector<double> m, p, lm, lp;
  for (const Sample& x : s) {
    m.push_back(x.*target);
    p.push_back(x.*pred);
    if (x.*target > 0 && x.*pred > 0) {
      lm.push_back(std::log(x.*target));
      lp.push_back(std::log(x.*pred));
    }
  }
  Corr c;
  c.n = m.size();
  c.n_log = lm.size();
  c.pearson = pearson(p, m);
  c.spearman = pearson(ranks(p), ranks(m));
  c.pearson_log = lm.size() > 2 ? pearson(lp, lm) : 0.0;
  return c;
}

void write_outputs(const Args& a, const std::vector<Sample>& samples, const GradStatsResult& g,
                   const GradStatsResult& g_mc, double rss_grad,
                   double base_loss, size_t eval_tokens, double seconds, bool final) {
  nlohmann::json j;
  j["tool"] = "sbits-sensitivity-study";
  j["model"] = a.model;
  j["calibration_text"] = a.text;
  j["eval_tokens"] = eval_tokens;
  j["stats_tokens"] = g.tokens;
  j["seq_len"] = a.seq_len;
  j["seed"] = a.seed;
  j["eval_mean_loss"] = base_loss;
  j["stats_mean_loss"] = g.mean_loss;
  j["grad_collection"] = {{"seconds", g.seconds}, {"tokens_per_s", double(g.tokens) / g.seconds},
                          {"seconds_sampled_targets", g_mc.seconds}, {"threads", a.threads},
                          {"peak_rss_mb", rss_grad}, {"load_average_note", "2-core machine shared with 3 other builds"}};
  j["study_seconds"] = seconds;
  std::string md = fmt::format(
      "# Sensitivity study: {}\n\nEval (measured) tokens: {} (mean loss {:.4f}); statistics tokens: {} (disjoint, "
      "mean loss {:.4f}); {} samples of (tile 64x128, bits in 2..4), mse tile quantizer.\n\n"
      "Gradient statistics: {:.1f} s for {} tokens ({:.0f} tok/s, {} threads), peak RSS {:.0f} MB.\n\n"
      "Measured: curv = (dL(W+E) + dL(W-E)) / 2 (the quantized tile and its mirror image: the first-order term "
      "cancels); dL+ = dL(W+E) alone.\n\n"
      "| subset | method | vs | n | Pearson | Spearman | Pearson of logs (n) |\n|---|---|---|---:|---:|---:|---:|\n",
      a.model, eval_tokens, base_loss, g.tokens, g.mean_loss, samples.size(), g.seconds, g.tokens,
      double(g.tokens) / g.seconds, a.threads, rss_grad);
  auto subset = [&](const std::string& label, auto pred) {
    std::vector<Sample> sub;
    for (const Sample& x : samples)
      if (pred(x)) sub.push_back(x);
    if (sub.size() < 3) return;
    for (auto [tname, target] : {std::pair{"curv", &Sample::measured}, std::pair{"dL+", &Sample::plus}})
      for (auto [name, field] : {std::pair{"grad", &Sample::grad}, std::pair{"grad_mc", &Sample::grad_mc},
                                 std::pair{"proxy", &Sample::proxy}, std::pair{"sq_err", &Sample::sq_err}}) {
        const Corr c = correlate(sub, field, target);
        j["correlations"][label][tname][name] = {{"n", c.n}, {"pearson", c.pearson}, {"spearman", c.spearman},
                                                 {"pearson_log", c.pearson_log}, {"n_log", c.n_log}};
        md += fmt::format("| {} | {} | {} | {} | {:.3f} | {:.3f} | {:.3f} ({}) |\n", label, name, tname, c.n,
                          c.pearson, c.spearman, c.pearson_log, c.n_log);
      }
  };
  subset("all", [](const Sample&) { return true; });
  subset("layers (no tok_embd/output)", [](const Sample& x) { return x.layer >= 0; });
  for (const char* k : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "tok_embd", "output"})
    subset(k, [k](const Sample& x) { return x.kind == k; });
  for (auto [name, field] : {std::pair{"grad", &Sample::grad}, std::pair{"grad_mc", &Sample::grad_mc}}) {
    std::vector<double> ratio;
    for (const Sample& x : samples)
      if (x.*field > 0 && x.measured > 0) ratio.push_back(x.measured / (x.*field));
    std::sort(ratio.begin(), ratio.end());
    if (ratio.empty()) continue;
    j[std::string("curv_over_") + name + "_median"] = ratio[ratio.size() / 2];
    md += fmt::format("\nMedian curv / {} predicted dL (positive pairs, n = {}): {:.3f}.\n", name, ratio.size(),
                      ratio[ratio.size() / 2]);
  }
  md += "\n| tensor | tile (r, c) | bits | curv | dL+ | dL- | grad | grad_mc | proxy |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const Sample& x : samples) {
    j["samples"].push_back({{"tensor", x.tensor}, {"tile_r", x.tile_r}, {"tile_c", x.tile_c}, {"bits", x.bits},
                            {"measured", x.measured}, {"plus", x.plus}, {"minus", x.minus}, {"grad", x.grad}, {"grad_mc", x.grad_mc}, {"proxy", x.proxy}, {"sq_err", x.sq_err}});
    md += fmt::format("| {} | ({}, {}) | {} | {:.3e} | {:.3e} | {:.3e} | {:.3e} | {:.3e} | {:.3e} |\n", x.tensor,
                      x.tile_r, x.tile_c, x.bits, x.measured, x.plus, x.minus, x.grad, x.grad_mc, x.proxy);
  }
  if (!a.json_path.empty()) std::ofstream(a.json_path) << j.dump(1) << "\n";
  if (!a.md_path.empty()) std::ofstream(a.md_path) << md;
  if (final) std::cout << md;
}

void run_study(const Args& a, const SbitsFile& f, const std::vector<std::vector<int32_t>>& eval,
               const std::vector<std::vector<int32_t>>& stats_w, const GradStatsResult& g,
               const GradStatsResult& g_mc, double rss_grad) {
  const auto t0 = std::chrono::steady_clock::now();
  LlamaBackprop bp(f, {.threads = a.threads});
  const ModelConfig& c = bp.config();
  std::vector<uint64_t> counts(c.vocab_size, 0);
  for (const auto& w : stats_w)
    for (size_t t = 0; t + 1 < w.size(); ++t) ++counts[size_t(w[t])];
  std::vector<ForwardCache> caches(eval.size());
  std::vector<double> base(eval.size());
  size_t T = 0;
  double base_total = 0;
  for (size_t i = 0; i < eval.size(); ++i) {
    base[i] = bp.loss(eval[i], nullptr, &caches[i]);
    base_total += base[i];
    T += eval[i].size() - 1;
  }
  // Resuming must reproduce the base loss exactly, or measured changes carry that error.
  const double resume_err = bp.forward_from(eval[0], caches[0], int(c.n_layers) / 2) - base[0];
  fmt::print("eval: {} tokens, mean loss {:.5f}; resume check {:.3g}\n", T, base_total / double(T), resume_err);
  Study study(f, bp, eval, caches, base, T);
  std::map<std::string, const GradSensitivity*> grad, grad_mc;
  for (const GradSensitivity& s : g.tensors) grad[s.name] = &s;
  for (const GradSensitivity& s : g_mc.tensors) grad_mc[s.name] = &s;
  const std::vector<std::string>& kinds = a.kinds;
  std::vector<int64_t> hit_tiles;  // embedding tile rows holding a token of the eval windows
  for (const auto& w : eval)
    for (size_t t = 0; t + 1 < w.size(); ++t) hit_tiles.push_back(w[t] / 64);
  std::sort(hit_tiles.begin(), hit_tiles.end());
  hit_tiles.erase(std::unique(hit_tiles.begin(), hit_tiles.end()), hit_tiles.end());
  std::mt19937 rng(a.seed);
  std::vector<Sample> samples;
  std::map<std::string, GradSensitivity> proxies;
  for (int s = 0; s < a.samples; ++s) {
    Sample x;
    x.kind = kinds[size_t(s) % kinds.size()];
    x.tensor = x.kind == "tok_embd" || x.kind == "output" ? x.kind
               : tensor_name_layer(rng() % c.n_layers, x.kind.c_str());
    x.layer = layer_of(x.tensor);
    x.bits = 2 + int(rng() % 3);
    const GradSensitivity& gs = *grad.at(x.tensor);
    const std::vector<float> w = load_f32(f, x.tensor);
    const bool emb = x.tensor == tensor_name_embedding();
    if (!proxies.count(x.tensor)) proxies[x.tensor] = proxy_of(gs, w, emb, counts, g.tokens);
    const int64_t tr = (gs.rows + 63) / 64, tc = (gs.cols + 127) / 128;
    x.tile_r = emb && a.embd_hit ? hit_tiles[rng() % hit_tiles.size()] : int64_t(rng() % uint64_t(tr));
    x.tile_c = int64_t(rng() % uint64_t(tc));
    const int64_t r0 = x.tile_r * 64, r1 = std::min(gs.rows, r0 + 64), c0 = x.tile_c * 128,
                  c1 = std::min(gs.cols, c0 + 128);
    TileInput ti;
    ti.w = w.data() + r0 * gs.cols + c0;
    ti.ldw = gs.cols;
    ti.rows = int(r1 - r0);
    ti.cols = int(c1 - c0);
    ti.group = 128;
    ti.bits = x.bits;
    ti.h = emb ? nullptr : gs.c.data() + c0;  // the layer's E[x^2], as calibration would give
    const TileCodes codes = quantize_tile(ti, TileMethod::mse);
    std::vector<float> wq = w;
    for (int r = 0; r < ti.rows; ++r)
      for (int cc = 0; cc < ti.cols; ++cc) wq[size_t((r0 + r) * gs.cols + c0 + cc)] = codes.value(r, cc);
    x.grad = predicted_delta(gs, wq.data(), w.data(), gs.cols, r0, r1, c0, c1);
    x.grad_mc = predicted_delta(*grad_mc.at(x.tensor), wq.data(), w.data(), gs.cols, r0, r1, c0, c1);
    x.proxy = predicted_delta(proxies.at(x.tensor), wq.data(), w.data(), gs.cols, r0, r1, c0, c1);
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t cc = c0; cc < c1; ++cc) x.sq_err += std::pow(double(wq[size_t(r * gs.cols + cc)]) - w[size_t(r * gs.cols + cc)], 2);
    x.plus = study.measure(x.tensor, w, wq, r0, r1);
    for (size_t i = 0; i < wq.size(); ++i) wq[i] = 2.0f * w[i] - wq[i];  // exact where wq == w
    x.minus = study.measure(x.tensor, w, wq, r0, r1);
    x.measured = 0.5 * (x.plus + x.minus);
    fmt::print("{:3d} {:22s} tile ({:3d},{:2d}) {}b  dL+ {:+.3e} dL- {:+.3e} curv {:+.3e}  grad {:.3e} mc {:.3e} proxy {:.3e}\n",
               s, x.tensor, x.tile_r, x.tile_c, x.bits, x.plus, x.minus, x.measured, x.grad, x.grad_mc, x.proxy);
    std::fflush(stdout);
    samples.push_back(x);
    // Partial results every 9 samples, so that an interrupted run still leaves its numbers.
    if (samples.size() % 9 == 0 && samples.size() < size_t(a.samples))
      write_outputs(a, samples, g, g_mc, rss_grad, base_total / double(T), T,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), false);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_outputs(a, samples, g, g_mc, rss_grad, base_total / double(T), T, secs, true);
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse_args(argc, argv);
  auto file = SbitsFile::open(a.model);
  const Metadata& meta = file->metadata();
  auto tok = Tokenizer::create(meta.get_string("tokenizer.kind"), meta.get_bytes("tokenizer.model"),
                               int32_t(meta.get_i64("tokenizer.bos_id")), int32_t(meta.get_i64("tokenizer.eos_id")));
  std::ifstream in(a.text, std::ios::binary);
  if (!in) throw QuantizerError(fmt::format("cannot read {}", a.text));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::vector<int32_t> ids = perplexity_tokens(*tok, ss.str(), PerplexityProtocol::docs);
  if (ids.size() < a.eval_tokens + a.stats_tokens + 2)
    throw QuantizerError(fmt::format("{}: {} tokens; the study needs {} eval + {} stats", a.text, ids.size(),
                                     a.eval_tokens, a.stats_tokens));
  std::vector<std::pair<size_t, size_t>> eval_ranges;
  const size_t n_eval = (a.eval_tokens + size_t(a.eval_seq_len) - 1) / size_t(a.eval_seq_len);
  const size_t n_stats = (a.stats_tokens + size_t(a.seq_len) - 1) / size_t(a.seq_len);
  const auto eval = spread_windows(ids, n_eval, a.eval_seq_len, 0, {}, &eval_ranges);
  const auto stats_w = spread_windows(ids, n_stats, a.seq_len, ids.size() / n_stats / 2, eval_ranges, nullptr);

  GradStatsOptions go;
  go.threads = a.threads;
  go.targets = GradTargets::data;  // "grad": the empirical Fisher; "grad_mc" below: the true Fisher
  go.progress = [](size_t done, size_t total) { fmt::print(stderr, "\rgradients: {}/{} tokens", done, total); };
  const GradStatsResult g = collect_grad_sensitivity(a.model, stats_w, go);
  const double rss_grad = peak_rss_mb();
  fmt::print(stderr, "\n");
  fmt::print("gradient statistics: {} tokens in {:.1f} s ({:.0f} tok/s, {} threads), mean loss {:.4f}, peak RSS {:.0f} MB\n",
             g.tokens, g.seconds, double(g.tokens) / g.seconds, a.threads, g.mean_loss, rss_grad);
  if (a.grad_only) return 0;
  go.targets = GradTargets::sampled;
  const GradStatsResult g_mc = collect_grad_sensitivity(a.model, stats_w, go);
  fmt::print(stderr, "\n");
  fmt::print("gradient statistics with sampled targets: {:.1f} s\n", g_mc.seconds);
  run_study(a, *file, eval, stats_w, g, g_mc, rss_grad);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "sbits-sensitivity-study: {}\n", e.what());
  return 1;
}
