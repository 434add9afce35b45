// quantizer/backprop: the forward pass against the engine's CPU forward (stories260K and tiny
// random models with both RoPE conventions, GQA, tied and untied classifiers), and every kind
// of activation gradient against central finite differences of the loss; sampled targets;
// bp::matmul_dw against a reference; grad_stats on stories260K (shapes, positivity).
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <random>
#include <tuple>

#include "engine/backends.h"
#include "engine/forward.h"
#include "formats/dtype_convert.h"
#include "formats/import.h"
#include "quantizer/backprop.h"
#include "quantizer/backprop_ops.h"
#include "quantizer/grad_stats.h"
#include "tests/test_data.h"

namespace sbits::quantizer {
namespace {

// The engine computes in f32 with another summation order (and its own attention kernel), so
// logits agree to f32 rounding amplified through the layers, not bit for bit.
constexpr double kLogitTolerance = 1e-4;  // observed: under 1e-5
// Central differences in f32 with step kFdStep: truncation error O(step^2 * f''') and rounding
// error O(1e-7 * |loss| / step). Observed worst error 6.6e-4 at step 3e-3 (gradients ~0.5-1),
// growing ~10x for each 3x larger step: truncation error, not a wrong gradient.
constexpr float kFdStep = 3e-3f;
constexpr double kFdAbsTolerance = 1e-3;
constexpr double kFdRelTolerance = 5e-3;

const std::string& stories() {
  static const std::string path = [] {
    const std::string out = test::temp_dir() + "/stories260K.sbits";
    ImportOptions o;
    o.tokenizer_path = test::data_path("models/tok512.model");
    import_model(test::data_path("models/stories260K.bin"), out, o);
    return out;
  }();
  return path;
}

// A model with random f32 weights; the tokenizer (needed by the engine's Model::load) is
// copied from stories260K, so vocab_size stays 512 whenever `tokenizer` is set.
std::string random_model(const std::string& name, ModelConfig c, bool tokenizer, uint32_t seed) {
  const std::string path = test::temp_dir() + "/" + name + ".sbits";
  SbitsWriter w(path, {});
  c.to_metadata(w.metadata());
  if (tokenizer) {
    auto src = SbitsFile::open(stories());
    for (const auto& [key, value] : src->metadata().entries())
      if (key.rfind("tokenizer.", 0) == 0) w.metadata().set(key, value);
    c.vocab_size = src->metadata().get_u64("llama.vocab_size");
  }
  std::mt19937 rng(seed);
  for (const ExpectedTensor& t : expected_tensors(c)) {
    size_t count = 1;
    for (uint64_t d : t.shape) count *= d;
    std::vector<float> v(count);
    if (t.shape.size() == 1) {
      std::normal_distribution<float> nd(1.0f, 0.2f);
      for (float& x : v) x = nd(rng);
    } else {
      // Scale 1/sqrt(in) keeps activations O(1); larger than trained weights so attention
      // and the softmax are far from uniform and every path carries gradient.
      std::normal_distribution<float> nd(0.0f, 1.5f / std::sqrt(float(t.shape[1])));
      for (float& x : v) x = nd(rng);
    }
    w.add_tensor(t.name, uint32_t(Layout::f32), 1, t.shape,
                 {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)});
  }
  w.commit();
  return path;
}

ModelConfig tiny_config(int dim, int heads, int kv, int ffn, int layers, int vocab, RopeConvention rope, bool tied) {
  ModelConfig c;
  c.dim = uint64_t(dim);
  c.n_heads = uint64_t(heads);
  c.n_kv_heads = uint64_t(kv);
  c.head_dim = uint64_t(dim / heads);
  c.ffn_dim = uint64_t(ffn);
  c.n_layers = uint64_t(layers);
  c.vocab_size = uint64_t(vocab);
  c.context_length = 256;
  c.rope = rope;
  c.tied_embeddings = tied;
  c.bos_id = 1;
  c.eos_id = 2;
  return c;
}

std::vector<int32_t> random_tokens(size_t n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, vocab - 1);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = d(rng);
  return t;
}

// Max |engine logit - backprop logit| over every position of `ids` (inputs ids[0..n-1]).
double engine_vs_backprop(const std::string& path, const std::vector<int32_t>& ids) {
  auto backend = make_backend("cpu", {.threads = 2});
  auto model = Model::load(path, *backend);
  const int n = int(ids.size()) - 1;
  Forward fwd(*model, n);
  auto cache = fwd.make_kv_cache(1, n, kernels::KvType::f32);
  std::vector<kernels::RowInfo> rows(static_cast<size_t>(n));
  std::vector<int32_t> logit_rows(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    rows[size_t(i)] = {0, i};
    logit_rows[size_t(i)] = i;
  }
  const size_t vocab = model->config().vocab_size;
  std::vector<float> want(size_t(n) * vocab);
  fwd.run(*cache, std::span(ids).first(static_cast<size_t>(n)), rows, logit_rows, want.data());

  auto file = SbitsFile::open(path);
  LlamaBackprop bp(*file, {.threads = 2});
  std::vector<float> got;
  const double loss = bp.loss(ids, &got);
  REQUIRE(got.size() == want.size());
  double worst = 0, want_loss = 0;
  for (int t = 0; t < n; ++t) {
    const float* z = want.data() + size_t(t) * vocab;
    double mx = z[0], s = 0;
    for (size_t i = 0; i < vocab; ++i) mx = std::max(mx, double(z[i]));
    for (size_t i = 0; i < vocab; ++i) s += std::exp(double(z[i]) - mx);
    want_loss += mx + std::log(s) - z[ids[size_t(t) + 1]];
  }
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, double(std::abs(got[i] - want[i])));
  CHECK(loss == doctest::Approx(want_loss).epsilon(1e-4));
  return worst;
}

// Stores every delta and the embedding gradient of one sequence.
struct Recorder final : GradObserver {
  std::map<std::pair<int, int>, std::vector<float>> delta;  // (layer, kind) -> [n][out]
  std::map<std::pair<int, int>, int> width;
  std::vector<float> emb;
  int n = 0;
  void on_linear(int layer, LinearKind kind, int row_begin, int rows, const float*, int, const float* d,
                 int out) override {
    auto& v = delta[{layer, int(kind)}];
    v.resize(size_t(n) * out);
    std::copy(d, d + size_t(rows) * out, v.begin() + ptrdiff_t(size_t(row_begin) * out));
    width[{layer, int(kind)}] = out;
  }
  void on_embedding(const int32_t*, int rows, const float* g, int dim) override { emb.assign(g, g + size_t(rows) * dim); }
};

}  // namespace

TEST_CASE("backprop forward: stories260K logits match the engine's CPU forward") {
  auto f = SbitsFile::open(stories());
  const int vocab = int(f->metadata().get_u64("llama.vocab_size"));
  const double worst = engine_vs_backprop(stories(), random_tokens(41, vocab, 7));
  MESSAGE("stories260K: max |logit difference| = " << worst);
  CHECK(worst < kLogitTolerance);
}

TEST_CASE("backprop forward: random GQA models, both RoPE conventions, tied and untied, match the engine") {
  for (auto rope : {RopeConvention::neox, RopeConvention::interleaved}) {
    for (bool tied : {false, true}) {
      const std::string name = std::string("fwd_") + (rope == RopeConvention::neox ? "neox" : "inter") +
                               (tied ? "_tied" : "");
      const std::string path = random_model(name, tiny_config(64, 4, 2, 96, 2, 512, rope, tied), true, 11);
      const double worst = engine_vs_backprop(path, random_tokens(33, 512, 3));
      INFO(name);
      MESSAGE(name << ": max |logit difference| = " << worst);
      CHECK(worst < kLogitTolerance);
    }
  }
}

TEST_CASE("backprop backward: every activation gradient matches central finite differences") {
  for (auto rope : {RopeConvention::interleaved, RopeConvention::neox}) {
    const bool tied = rope == RopeConvention::neox;
    const ModelConfig c = tiny_config(16, 4, 2, 24, 2, 64, rope, tied);
    const std::string path = random_model(std::string("fd_") + (rope == RopeConvention::neox ? "neox" : "inter"), c, false, 5);
    auto file = SbitsFile::open(path);
    LlamaBackprop bp(*file, {.threads = 2});
    const std::vector<int32_t> ids = random_tokens(13, 64, 9);
    const int n = int(ids.size()) - 1;
    Recorder rec;
    rec.n = n;
    const double loss = bp.loss_and_gradients(ids, rec);
    CHECK(loss == doctest::Approx(bp.loss(ids)).epsilon(1e-6));
    std::mt19937 rng(3);
    double worst_err = 0, sum_abs = 0;
    int checked = 0;
    auto check_site = [&](Probe p, float analytic, const std::string& what) {
      p.value = kFdStep;
      bp.set_probe(p);
      const double up = bp.loss(ids);
      p.value = -kFdStep;
      bp.set_probe(p);
      const double down = bp.loss(ids);
      bp.set_probe(std::nullopt);
      const double fd = (up - down) / (2.0 * kFdStep);
      INFO(what, " row ", p.row, " col ", p.col, ": analytic ", analytic, ", finite difference ", fd);
      CHECK(std::abs(fd - analytic) <= kFdAbsTolerance + kFdRelTolerance * std::abs(fd));
      worst_err = std::max(worst_err, std::abs(fd - analytic));
      sum_abs += std::abs(analytic);
      ++checked;
    };
    for (int i = 0; i < 6; ++i) {
      Probe p;
      p.embedding = true;
      p.row = int(rng() % uint32_t(n));
      p.col = int(rng() % c.dim);
      check_site(p, rec.emb[size_t(p.row) * c.dim + size_t(p.col)], "embedding");
    }
    for (const auto& [key, d] : rec.delta) {
      const int out = rec.width[key];
      for (int i = 0; i < 4; ++i) {
        Probe p;
        p.layer = key.first;
        p.kind = LinearKind(key.second);
        p.row = int(rng() % uint32_t(n));
        p.col = int(rng() % uint32_t(out));
        check_site(p, d[size_t(p.row) * out + size_t(p.col)],
                   std::string(linear_kind_name(p.kind)) + " layer " + std::to_string(p.layer));
      }
    }
    CHECK(rec.delta.size() == size_t(7 * 2 + 1));
    MESSAGE(checked << " sites: max |fd - analytic| = " << worst_err << ", mean |analytic| = " << sum_abs / checked);
  }
}

TEST_CASE("grad_stats on stories260K: every 2-D weight, positive factors, sensible scale") {
  auto f = SbitsFile::open(stories());
  const int vocab = int(f->metadata().get_u64("llama.vocab_size"));
  const std::vector<int32_t> ids = random_tokens(200, vocab, 21);
  GradStatsOptions o;
  o.seq_len = 64;
  o.threads = 2;
  const GradStatsResult r = collect_grad_sensitivity(stories(), ids, o);
  CHECK(r.tokens == 199);
  CHECK(r.mean_loss > 0);
  size_t matrices = 0;
  for (const TensorInfo& t : f->tensors()) matrices += t.shape.size() == 2;
  REQUIRE(r.tensors.size() == matrices);
  for (const GradSensitivity& s : r.tensors) {
    INFO(s.name);
    CHECK(s.r.size() == size_t(s.rows));
    CHECK(s.c.size() == size_t(s.cols));
    for (float v : s.r) CHECK((std::isfinite(v) && v >= 0));
    for (float v : s.c) CHECK((std::isfinite(v) && v >= 0));
  }
}

}  // namespace sbits::quantizer

namespace sbits::quantizer {

TEST_CASE("backprop sampled targets: same loss, classifier deltas are softmax - onehot(drawn), reproducible") {
  const ModelConfig c = tiny_config(16, 4, 2, 24, 2, 64, RopeConvention::neox, false);
  const std::string path = random_model("sampled", c, false, 17);
  auto file = SbitsFile::open(path);
  const std::vector<int32_t> ids = random_tokens(40, 64, 4);
  const int n = int(ids.size()) - 1;
  auto run = [&](GradTargets targets, uint64_t seed, double* loss) {
    LlamaBackprop bp(*file, {.threads = 2, .targets = targets, .seed = seed});
    Recorder rec;
    rec.n = n;
    *loss = bp.loss_and_gradients(ids, rec);
    return rec.delta.at({int(c.n_layers), int(LinearKind::classifier)});
  };
  double l_data = 0, l_a = 0, l_b = 0, l_c = 0;
  const std::vector<float> data = run(GradTargets::data, 1, &l_data);
  const std::vector<float> a = run(GradTargets::sampled, 1, &l_a);
  const std::vector<float> b = run(GradTargets::sampled, 1, &l_b);
  const std::vector<float> other = run(GradTargets::sampled, 2, &l_c);
  CHECK(l_a == l_data);
  CHECK(a == b);
  CHECK(a != other);
  int moved = 0;
  for (int t = 0; t < n; ++t) {
    // Exactly one entry per row is p - 1 (negative); the row sums to 0 like softmax - onehot.
    double sum = 0;
    int negative = 0;
    for (int i = 0; i < 64; ++i) {
      const float v = a[size_t(t) * 64 + size_t(i)];
      sum += v;
      negative += v < 0;
      if (v != data[size_t(t) * 64 + size_t(i)]) ++moved;
    }
    CHECK(negative == 1);
    CHECK(std::abs(sum) < 1e-5);
  }
  CHECK(moved > 0);
}

}  // namespace sbits::quantizer

namespace sbits::quantizer {

TEST_CASE("bp::matmul_dw against a double reference: f32/f16/bf16, awkward sizes, 1-3 threads") {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (Layout layout : {Layout::f32, Layout::f16, Layout::bf16}) {
    for (auto [rows, cols, n] : {std::tuple{1, 1, 1}, std::tuple{37, 19, 5}, std::tuple{100, 64, 3},
                                 std::tuple{65, 33, 2}}) {
      std::vector<float> w(size_t(rows) * cols), d(size_t(n) * rows);
      for (float& v : w) v = nd(rng);
      for (float& v : d) v = nd(rng);
      const size_t eb = layout == Layout::f32 ? 4 : 2;
      std::vector<uint8_t> stored(w.size() * eb);
      convert_floats(Layout::f32, layout, reinterpret_cast<const uint8_t*>(w.data()), stored.data(), w.size(), nullptr);
      std::vector<float> wr(w.size());  // the weights as stored, for the reference
      convert_floats(layout, Layout::f32, stored.data(), reinterpret_cast<uint8_t*>(wr.data()), w.size(), nullptr);
      for (int threads : {1, 2, 3}) {
        std::vector<float> y(size_t(n) * cols, 123.0f);
        bp::matmul_dw(stored.data(), layout, rows, cols, d.data(), n, y.data(), threads);
        for (int t = 0; t < n; ++t)
          for (int j = 0; j < cols; ++j) {
            double ref = 0, mag = 0;
            for (int k = 0; k < rows; ++k) {
              ref += double(d[size_t(t) * rows + k]) * wr[size_t(k) * cols + j];
              mag += std::abs(double(d[size_t(t) * rows + k]) * wr[size_t(k) * cols + j]);
            }
            INFO(layout_name(uint32_t(layout)), " ", rows, "x", cols, " n=", n, " threads=", threads);
            // f32 accumulation of `rows` products: error a few ulps of the sum of magnitudes.
            CHECK(std::abs(y[size_t(t) * cols + j] - ref) <= 1e-6 * rows * mag + 1e-6);
          }
      }
    }
  }
}

}  // namespace sbits::quantizer
