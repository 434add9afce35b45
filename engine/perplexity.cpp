#include "engine/perplexity.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <thread>

#include "engine/forward.h"

namespace sbits {
namespace {

// -log softmax(logits)[target], in double so that 32000-way sums lose nothing.
double token_nll(const float* logits, size_t vocab, int32_t target) {
  const float mx = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (size_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return std::log(sum) + mx - logits[target];
}

struct Window {
  size_t start;       // first input token in ids
  int n_inputs;       // tokens fed
  int first_scored;   // rows [first_scored, end_scored) have their next token scored
  int end_scored;
};

std::vector<Window> make_windows(size_t n_ids, const PerplexityOptions& o) {
  std::vector<Window> w;
  const auto ctx = static_cast<size_t>(o.ctx);
  if (o.protocol == PerplexityProtocol::docs) {
    for (size_t s = 0; s + 1 < n_ids; s += ctx) {
      const int n = static_cast<int>(std::min(ctx, n_ids - 1 - s));
      w.push_back({s, n, 0, n});
    }
  } else {
    // As llama.cpp's perplexity: logits at rows ctx/2 .. ctx-2 predict the chunk's own tokens.
    for (size_t s = 0; s + ctx <= n_ids; s += ctx) w.push_back({s, o.ctx, o.ctx / 2, o.ctx - 1});
  }
  return w;
}

// Calls f(j) for j < n on all cores. The log-softmax of a 32000-wide row costs about as much
// as a GPU forward of that row, so on a GPU backend a single host thread scoring the rows was
// the bottleneck (3,800 tok/s on an H200 for a 58M model).
template <class F>
void score_rows(size_t n, F&& f) {
  const size_t threads = std::min<size_t>(std::max(1u, std::thread::hardware_concurrency()), (n + 31) / 32);
  if (threads <= 1) {
    for (size_t j = 0; j < n; ++j) f(j);
    return;
  }
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (size_t j = t; j < n; j += threads) f(j);
    });
  for (auto& th : pool) th.join();
}

}  // namespace

std::vector<int32_t> perplexity_tokens(const Tokenizer& tok, std::string_view text, PerplexityProtocol protocol) {
  std::vector<int32_t> ids;
  if (protocol == PerplexityProtocol::llamacpp) return tok.encode(text, /*add_bos=*/true);
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find("\n\n\n", pos);
    if (end == std::string_view::npos) end = text.size();
    std::vector<int32_t> doc = tok.encode(text.substr(pos, end - pos), /*add_bos=*/false);
    if (tok.bos_id() >= 0) ids.push_back(tok.bos_id());
    ids.insert(ids.end(), doc.begin(), doc.end());
    if (tok.eos_id() >= 0) ids.push_back(tok.eos_id());
    pos = end + 3;
  }
  return ids;
}

PerplexityResult evaluate_perplexity(const Model& model, const std::vector<int32_t>& ids,
                                     const PerplexityOptions& o) {
  if (o.ctx < 2) throw EngineError(fmt::format("perplexity: ctx must be >= 2, got {}", o.ctx));
  if (static_cast<uint64_t>(o.ctx) > model.config().context_length)
    throw EngineError(fmt::format("perplexity: ctx {} exceeds the model's context length {}", o.ctx,
                                  model.config().context_length));
  const std::vector<Window> windows = make_windows(ids.size(), o);
  if (windows.empty())
    throw EngineError(fmt::format("perplexity: the text has {} tokens, too few for one window of {}", ids.size(),
                                  o.ctx));
  size_t total = 0;
  for (const Window& w : windows) total += static_cast<size_t>(w.end_scored - w.first_scored);
  if (o.max_tokens) total = std::min(total, o.max_tokens);

  Forward fwd(model, o.batch_rows);
  auto cache = fwd.make_kv_cache(1, o.ctx, o.kv_type);
  const size_t vocab = model.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(o.batch_rows) * vocab);
  std::vector<int32_t> chunk_ids, logit_rows;
  std::vector<kernels::RowInfo> rows;
  double sum = 0, sum_sq = 0;
  size_t scored = 0;
  std::vector<double> nlls;

  for (const Window& w : windows) {
    std::vector<int32_t> input(ids.begin() + static_cast<ptrdiff_t>(w.start),
                               ids.begin() + static_cast<ptrdiff_t>(w.start) + w.n_inputs);
    if (o.protocol == PerplexityProtocol::llamacpp && model.tokenizer().bos_id() >= 0)
      input[0] = model.tokenizer().bos_id();
    // Rows past end_scored are not fed at all: nothing after them is scored.
    const int n_fed = std::min(w.n_inputs, w.end_scored);
    for (int c0 = 0; c0 < n_fed && scored < total; c0 += o.batch_rows) {
      const int n = std::min(o.batch_rows, n_fed - c0);
      rows.resize(static_cast<size_t>(n));
      logit_rows.clear();
      for (int i = 0; i < n; ++i) {
        rows[i] = {0, c0 + i};
        if (c0 + i >= w.first_scored && c0 + i < w.end_scored) logit_rows.push_back(i);
      }
      fwd.run(*cache, std::span<const int32_t>(input).subspan(static_cast<size_t>(c0), static_cast<size_t>(n)), rows,
              logit_rows, logits.data());
      const size_t m = std::min(logit_rows.size(), total - scored);
      nlls.resize(m);
      score_rows(m, [&](size_t j) {
        const size_t target_index = w.start + static_cast<size_t>(c0 + logit_rows[j]) + 1;
        nlls[j] = token_nll(logits.data() + j * vocab, vocab, ids[target_index]);
      });
      for (size_t j = 0; j < m; ++j) {  // summed in order: the result does not depend on threads
        const double nll = nlls[j];
        sum += nll;
        sum_sq += nll * nll;
        ++scored;
      }
    }
    if (o.progress) o.progress(scored, total);
    if (scored >= total) break;
  }
  PerplexityResult r;
  r.tokens = scored;
  r.nll = sum / static_cast<double>(scored);
  r.ppl = std::exp(r.nll);
  if (scored > 1) {
    const double var = std::max(0.0, sum_sq / static_cast<double>(scored) - r.nll * r.nll);
    r.ppl_error = r.ppl * std::sqrt(var / static_cast<double>(scored - 1));
  }
  return r;
}

}  // namespace sbits
