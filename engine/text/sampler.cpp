#include "engine/text/sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <ranges>
#include <stdexcept>

namespace sbits {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

void require(bool ok, const char* field, const std::string& rule, double got) {
  if (!ok) throw std::invalid_argument(fmt::format("SamplerParams.{} {} (got {})", field, rule, got));
}

void validate(const SamplerParams& p, int32_t vocab_size) {
  if (vocab_size <= 0) throw std::invalid_argument(fmt::format("Sampler: vocab_size must be > 0 (got {})", vocab_size));
  require(std::isfinite(p.temperature), "temperature", "must be a finite number (<= 0 means greedy)", p.temperature);
  require(std::isfinite(p.top_p) && p.top_p >= 0, "top_p", "must be a finite number >= 0 (>= 1 means off)", p.top_p);
  require(std::isfinite(p.min_p) && p.min_p <= 1, "min_p", "must be a finite number <= 1 (<= 0 means off)", p.min_p);
  require(std::isfinite(p.repeat_penalty) && p.repeat_penalty > 0, "repeat_penalty",
          "must be a finite number > 0 (1 means off)", p.repeat_penalty);
  require(p.repeat_last_n >= 0, "repeat_last_n", "must be >= 0", p.repeat_last_n);
  require(std::isfinite(p.presence_penalty), "presence_penalty", "must be a finite number", p.presence_penalty);
  require(std::isfinite(p.frequency_penalty), "frequency_penalty", "must be a finite number", p.frequency_penalty);
}

// Canonical candidate order: higher logit first, lower id on ties. A strict total order (NaN
// was mapped to -inf), so every sort or selection over it has one possible result whatever the
// standard library: that is what keeps draws identical across platforms.
struct Better {
  template <typename C>
  bool operator()(const C& a, const C& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
};

}  // namespace

Sampler::Sampler(const SamplerParams& p, int32_t vocab_size) : p_(p), n_vocab_(vocab_size), rng_(p.seed) {
  validate(p, vocab_size);
  counts_.assign(static_cast<size_t>(vocab_size), 0);
  history_.reserve(std::min<size_t>(static_cast<size_t>(p.repeat_last_n), 4096));
}

void Sampler::accept(int32_t token) {
  if (token < 0 || token >= n_vocab_) {
    throw std::invalid_argument(
        fmt::format("Sampler::accept: token {} is outside the vocabulary [0, {})", token, n_vocab_));
  }
  const auto window = static_cast<size_t>(p_.repeat_last_n);
  if (window == 0) return;
  if (history_.size() < window) {
    history_.push_back(token);
  } else {
    --counts_[static_cast<size_t>(history_[history_next_])];
    history_[history_next_] = token;
    history_next_ = (history_next_ + 1) % window;
  }
  ++counts_[static_cast<size_t>(token)];
}

void Sampler::reset() {
  for (int32_t t : history_) counts_[static_cast<size_t>(t)] = 0;
  history_.clear();
  history_next_ = 0;
  rng_.reseed(p_.seed);
  cands_.clear();
  greedy_logits_.clear();
  has_last_ = false;
}

// llama.cpp's penalties sampler: each distinct token of the window is penalised once, the
// repetition penalty by sign (so it always lowers the logit), then OpenAI's
// frequency * count + presence.
void Sampler::apply_penalties(std::span<float> logits) {
  auto& distinct = scratch_ids_;
  distinct.assign(history_.begin(), history_.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  for (int32_t t : distinct) {
    const int32_t count = counts_[static_cast<size_t>(t)];
    float& l = logits[static_cast<size_t>(t)];
    if (p_.repeat_penalty != 1.0f) l = l <= 0 ? l * p_.repeat_penalty : l / p_.repeat_penalty;
    l -= static_cast<float>(count) * p_.frequency_penalty + static_cast<float>(count > 0) * p_.presence_penalty;
  }
}

int32_t Sampler::sample(std::span<float> logits) {
  if (logits.size() != static_cast<size_t>(n_vocab_)) {
    throw std::invalid_argument(
        fmt::format("Sampler::sample: {} logits for a vocabulary of {}", logits.size(), n_vocab_));
  }
  if (penalties_on() && !history_.empty()) apply_penalties(logits);
  // NaN becomes -inf, so that comparisons form a total order; at least one token must be possible.
  bool any = false;
  for (float& l : logits) {
    l = std::isnan(l) ? kNegInf : l;
    any |= l > kNegInf;
  }
  if (!any) throw std::invalid_argument("Sampler::sample: every logit is NaN or -inf; nothing can be sampled");
  has_last_ = true;
  weights_valid_ = false;
  greedy_ = p_.temperature <= 0;
  return greedy_ ? sample_greedy(logits) : sample_random(logits);
}

int32_t Sampler::sample_greedy(std::span<const float> logits) {
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;  // strict: the lowest id wins ties
  // Keep the logits for last_top_logprobs: cheaper than building the distribution every token.
  greedy_logits_.assign(logits.begin(), logits.end());
  cands_.clear();
  sorted_ = 0;
  max_logit_ = logits[best];
  chosen_ = static_cast<int32_t>(best);
  chosen_logit_ = max_logit_;
  return chosen_;
}

int32_t Sampler::candidates_needed(int32_t max_k) const {
  if (p_.temperature <= 0 || penalties_on() || p_.top_k <= 0 || p_.top_k >= n_vocab_ || p_.top_k > max_k) return 0;
  return p_.top_k;
}

int32_t Sampler::sample_top(std::span<const int32_t> ids, std::span<const float> logits) {
  const int32_t k = candidates_needed(std::numeric_limits<int32_t>::max());
  if (k == 0)
    throw std::invalid_argument(
        "Sampler::sample_top: greedy, penalties or top-k off: this sampler needs every logit; use sample()");
  if (ids.size() != static_cast<size_t>(k) || logits.size() != static_cast<size_t>(k))
    throw std::invalid_argument(fmt::format("Sampler::sample_top: {} ids and {} logits; expected {} candidates (top_k)",
                                            ids.size(), logits.size(), k));
  cands_.resize(static_cast<size_t>(k));
  bool any = false;
  for (size_t i = 0; i < cands_.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= n_vocab_)
      throw std::invalid_argument(fmt::format(
          "Sampler::sample_top: id {} (candidate {}) is outside the vocabulary [0, {})", ids[i], i, n_vocab_));
    cands_[i] = {std::isnan(logits[i]) ? kNegInf : logits[i], ids[i], 0.0f};
    any |= cands_[i].logit > kNegInf;
    if (i > 0 && !Better{}(cands_[i - 1], cands_[i]))
      throw std::invalid_argument(fmt::format(
          "Sampler::sample_top: candidate {} (id {}, logit {}) does not rank below the one before it "
          "(id {}, logit {}); expected the most likely first, the lower id first on ties",
          i, ids[i], logits[i], ids[i - 1], logits[i - 1]));
  }
  if (!any) throw std::invalid_argument("Sampler::sample_top: every logit is NaN or -inf; nothing can be sampled");
  has_last_ = true;
  weights_valid_ = false;
  greedy_ = false;
  sorted_ = cands_.size();
  return sample_candidates();
}

int32_t Sampler::sample_random(std::span<const float> logits) {
  select_candidates(logits);
  return sample_candidates();
}

int32_t Sampler::sample_candidates() {
  if (p_.temperature != 1.0f)
    for (auto& c : cands_) c.logit /= p_.temperature;  // monotone: the canonical order holds
  compute_weights();
  if (sorted_ == 0) prefilter();
  if (p_.top_p < 1.0f) truncate_top_p();
  if (p_.min_p > 0.0f) truncate_min_p();
  draw();
  return chosen_;
}

// Top-k straight from the logits with a k-element heap (one pass, no copy of the vocabulary),
// or every token when top-k is off.
void Sampler::select_candidates(std::span<const float> logits) {
  const size_t n = logits.size();
  const size_t k = p_.top_k > 0 ? std::min(static_cast<size_t>(p_.top_k), n) : n;
  if (k < n) {
    scratch_ids_.resize(k);
    const auto better = [&](int32_t a, int32_t b) {
      const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
      return la > lb || (la == lb && a < b);
    };
    std::ranges::partial_sort_copy(std::views::iota(int32_t{0}, static_cast<int32_t>(n)), scratch_ids_, better);
    cands_.resize(k);
    for (size_t i = 0; i < k; ++i) cands_[i] = {logits[static_cast<size_t>(scratch_ids_[i])], scratch_ids_[i], 0.0f};
    sorted_ = k;
  } else {
    cands_.resize(n);
    for (size_t i = 0; i < n; ++i) cands_[i] = {logits[i], static_cast<int32_t>(i), 0.0f};
    sorted_ = 0;
  }
}

void Sampler::sort_prefix(size_t n) {
  n = std::min(n, cands_.size());
  if (n <= sorted_) return;
  // Grow geometrically so that top-p, which asks one more at a time, stays O(V log V) overall.
  const size_t end = std::min(cands_.size(), std::max({n, 2 * sorted_, size_t{64}}));
  const auto first = cands_.begin() + static_cast<ptrdiff_t>(sorted_);
  const auto mid = cands_.begin() + static_cast<ptrdiff_t>(end);
  if (mid != cands_.end()) std::nth_element(first, mid, cands_.end(), Better{});
  std::sort(first, mid, Better{});
  sorted_ = end;
}

double Sampler::log_weight(float logit) const {
  // The top candidate has weight exactly 1, also when its logit is +inf (inf - inf is NaN).
  return logit == max_logit_ ? 0.0 : static_cast<double>(logit) - static_cast<double>(max_logit_);
}

namespace {
// The weight of a candidate: exactly 1 for the top logit (also when it is +inf).
float weight_of(float logit, float max_logit) {
  return logit == max_logit ? 1.0f : text_detail::portable_exp_nonpositive(logit - max_logit);
}
}  // namespace

void Sampler::compute_weights() {
  max_logit_ = kNegInf;
  if (sorted_ > 0) {
    max_logit_ = cands_[0].logit;
  } else {
    for (const auto& c : cands_) max_logit_ = std::max(max_logit_, c.logit);
  }
  for (auto& c : cands_) c.weight = weight_of(c.logit, max_logit_);
  double sum = 0;  // in draw order, so that draw() walks up to exactly this total
  for (const auto& c : cands_) sum += c.weight;
  weight_sum_ = sum;
  weights_valid_ = true;
}

// With top-k off every token is a candidate; top-p and min-p will keep few of them. Dropping
// those that neither could keep, in one stable pass, spares sorting the whole vocabulary. The
// total weight stays that of all tokens: top-p measures against it.
void Sampler::prefilter() {
  float floor = p_.min_p > 0.0f ? p_.min_p : 0.0f;
  if (p_.top_p < 1.0f) floor = std::max(floor, top_p_floor());
  if (floor <= 0.0f) return;
  cands_.erase(std::remove_if(cands_.begin(), cands_.end(), [&](const Candidate& c) { return c.weight < floor; }),
               cands_.end());
}

// A weight below which no token can be in the top-p prefix: the tokens at or above it already
// hold more than top_p of the mass. Found from the mass per binary exponent of the weights (all
// in (0, 1], normal floats or 0), with a margin far above the rounding of any summation order,
// so the prefix walk always ends inside the kept set.
float Sampler::top_p_floor() const {
  std::array<double, 128> mass{};  // mass[b]: weights in [2^-b, 2^(1-b)); b = 127 holds the zeros
  for (const auto& c : cands_) {
    uint32_t bits;
    std::memcpy(&bits, &c.weight, sizeof bits);
    mass[127 - ((bits >> 23) & 0xFF)] += c.weight;
  }
  const double target = static_cast<double>(p_.top_p) * weight_sum_ * (1.0 + 1e-6);
  double cum = 0;
  for (uint32_t b = 0; b < 127; ++b) {
    cum += mass[b];
    if (cum >= target) {
      const uint32_t bits = (127 - b) << 23;  // 2^-b
      float floor;
      std::memcpy(&floor, &bits, sizeof floor);
      return floor;
    }
  }
  return 0.0f;
}

// Keeps the smallest most-likely prefix whose probability reaches top_p (the token that
// crosses the line is kept, as in llama.cpp), sorting only as far as needed.
void Sampler::truncate_top_p() {
  const double target = static_cast<double>(p_.top_p) * weight_sum_;
  double cum = 0;
  size_t keep = 0;
  while (keep < cands_.size()) {
    sort_prefix(keep + 1);
    cum += cands_[keep].weight;
    ++keep;
    if (cum >= target) break;
  }
  cands_.resize(keep);
  sorted_ = keep;
  weight_sum_ = cum;
}

// Keeps tokens with probability >= min_p * the top probability, i.e. weight >= min_p since the
// top weight is 1. The top token always stays (min_p <= 1).
void Sampler::truncate_min_p() {
  const float min_p = p_.min_p;
  if (sorted_ >= cands_.size()) {
    size_t keep = 1;
    while (keep < cands_.size() && cands_[keep].weight >= min_p) ++keep;
    cands_.resize(keep);
    sorted_ = keep;
  } else {
    // Unsorted (id order): remove_if keeps the survivors' relative order, so this stays canonical.
    cands_.erase(std::remove_if(cands_.begin(), cands_.end(), [&](const Candidate& c) { return c.weight < min_p; }),
                 cands_.end());
  }
  double sum = 0;
  for (const auto& c : cands_) sum += c.weight;
  weight_sum_ = sum;
}

void Sampler::draw() {
  const double target = rng_.uniform() * weight_sum_;
  double cum = 0;
  size_t pick = cands_.size();
  size_t last_possible = 0;
  for (size_t i = 0; i < cands_.size(); ++i) {
    if (cands_[i].weight > 0) last_possible = i;
    cum += cands_[i].weight;
    if (target < cum) {
      pick = i;
      break;
    }
  }
  // u * sum can round up to sum itself; then the last token with any weight is the answer.
  if (pick == cands_.size()) pick = last_possible;
  chosen_ = cands_[pick].id;
  chosen_logit_ = cands_[pick].logit;
}

void Sampler::ensure_greedy_distribution() const {
  if (weights_valid_) return;
  cands_.resize(greedy_logits_.size());
  double sum = 0;
  for (size_t i = 0; i < greedy_logits_.size(); ++i) {
    const float w = weight_of(greedy_logits_[i], max_logit_);
    cands_[i] = {greedy_logits_[i], static_cast<int32_t>(i), w};
    sum += w;
  }
  weight_sum_ = sum;
  weights_valid_ = true;
}

std::vector<std::pair<int32_t, float>> Sampler::last_top_logprobs(int n) const {
  std::vector<std::pair<int32_t, float>> out;
  if (!has_last_ || n <= 0) return out;
  if (greedy_) ensure_greedy_distribution();
  const double log_sum = std::log(weight_sum_);
  const size_t k = std::min(static_cast<size_t>(n), cands_.size());
  std::vector<Candidate> top;
  if (sorted_ >= k) {
    top.assign(cands_.begin(), cands_.begin() + static_cast<ptrdiff_t>(k));
  } else {
    top.resize(k);
    std::partial_sort_copy(cands_.begin(), cands_.end(), top.begin(), top.end(), Better{});
  }
  out.reserve(k);
  for (const auto& c : top) out.emplace_back(c.id, static_cast<float>(log_weight(c.logit) - log_sum));
  return out;
}

float Sampler::last_logprob() const {
  if (!has_last_) return std::numeric_limits<float>::quiet_NaN();
  if (greedy_) ensure_greedy_distribution();
  return static_cast<float>(log_weight(chosen_logit_) - std::log(weight_sum_));
}

}  // namespace sbits
