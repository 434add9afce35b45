// Choosing the next token from logits: penalties, greedy or truncated random sampling.
//
// Stages, in llama.cpp's order:
//   penalties -> (greedy: argmax, done) -> top-k -> temperature + softmax -> top-p -> min-p -> draw
// Determinism: the same seed and the same logits give the same choices on every IEEE-754
// platform (our own generator, uniform conversion and exp; candidates drawn in a canonical
// order; ties broken by the lower id).
// Threading: a Sampler is one stream's state; use one per sequence.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include "engine/text/sampler_math.h"

namespace sbits {

struct SamplerParams {
  float temperature = 0.8f;     // <= 0: greedy (argmax after penalties)
  int32_t top_k = 40;           // <= 0: off; larger than the vocabulary: off
  float top_p = 0.95f;          // >= 1: off; must be >= 0 (0 keeps only the most likely token)
  float min_p = 0.05f;          // <= 0: off; must be <= 1
  float repeat_penalty = 1.0f;  // 1: off (llama.cpp semantics: divide positive / multiply negative
                                // logits of recent tokens); must be > 0
  int32_t repeat_last_n = 64;   // the window of accepted tokens the penalties look at; >= 0
  float presence_penalty = 0.0f, frequency_penalty = 0.0f;  // OpenAI semantics, over the same window:
                                // logit -= frequency * count + presence * (count > 0)
  uint64_t seed = 0;            // same seed + same logits -> same choices, on every platform
};

class Sampler {
 public:
  // Validates params: throws std::invalid_argument naming the field (non-finite floats,
  // repeat_penalty <= 0, top_p < 0, min_p > 1, repeat_last_n < 0, vocab_size <= 0).
  Sampler(const SamplerParams& p, int32_t vocab_size);

  // Chooses a token. logits.size() must be vocab_size (std::invalid_argument otherwise). May
  // modify logits (penalties are applied in place, NaN becomes -inf). Does NOT record the
  // token. Throws std::invalid_argument when every logit is NaN or -inf.
  int32_t sample(std::span<float> logits);
  // How many of the most likely logits sample_top() needs to choose exactly as sample() would
  // on all of them: top_k, for random sampling truncated to top_k <= max_k (and < the vocabulary)
  // without penalties (they move logits from outside any top list into it). 0 when sample()
  // needs every logit: greedy (which keeps them for logprobs), top-k off or above max_k, penalties.
  int32_t candidates_needed(int32_t max_k) const;
  // Whether any of the repeat, presence and frequency penalties is set.
  bool penalties_on() const {
    return p_.repeat_penalty != 1.0f || p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f;
  }
  // sample() given only the candidates_needed() most likely logits, most likely first and the
  // lower id first on ties (kernels::Backend::top_k's order), so that a GPU backend returns k
  // values instead of the vocabulary: the same choice, log probabilities and generator state as
  // sample() on all the logits (NaN counts as -inf, as there). Throws std::invalid_argument when
  // candidates_needed() is 0, for another count, ids outside the vocabulary, another order, or
  // when every candidate is NaN or -inf.
  int32_t sample_top(std::span<const int32_t> ids, std::span<const float> logits);
  // Records the token in the penalty history (prompt tokens too, if they should be penalised).
  // Throws std::invalid_argument for an id outside the vocabulary.
  void accept(int32_t token);
  // Clears the history and reseeds with params().seed.
  void reset();

  // The final distribution the last sample() drew from (after penalties, temperature and
  // truncation), its top `n` as (id, natural-log probability), most likely first, for OpenAI
  // logprobs. Greedy: the softmax of the penalised logits. Empty before the first sample().
  std::vector<std::pair<int32_t, float>> last_top_logprobs(int n) const;
  // Log probability of the chosen token in that distribution; NaN before the first sample().
  float last_logprob() const;

  const SamplerParams& params() const { return p_; }
  int32_t vocab_size() const { return n_vocab_; }

 private:
  struct Candidate {
    float logit;  // penalised, then divided by the temperature
    int32_t id;
    float weight;  // exp(logit - max logit); the draw uses weight / sum of weights
  };
  void apply_penalties(std::span<float> logits);
  int32_t sample_greedy(std::span<const float> logits);
  int32_t sample_random(std::span<const float> logits);
  int32_t sample_candidates();  // the random path once cands_ holds the top-k (or all) tokens
  void select_candidates(std::span<const float> logits);
  void sort_prefix(size_t n);  // makes cands_[0, n) the n best, in canonical order
  void compute_weights();
  void prefilter();
  float top_p_floor() const;
  void truncate_top_p();
  void truncate_min_p();
  void draw();

  SamplerParams p_;
  int32_t n_vocab_;
  text_detail::Xoshiro256 rng_;
  std::vector<int32_t> history_;  // ring buffer of the last repeat_last_n accepted tokens
  size_t history_next_ = 0;
  std::vector<int32_t> counts_;  // occurrences of each id in history_
  std::vector<int32_t> scratch_ids_;

  // The last distribution. Random sampling: cands_ in draw order, the first sorted_ of them in
  // canonical order (logit desc, id asc), weight_sum_ their total weight. Greedy: only a copy
  // of the penalised logits; logprobs build the distribution from it when asked (mutable cache).
  bool greedy_ = false;
  std::vector<float> greedy_logits_;
  mutable std::vector<Candidate> cands_;
  size_t sorted_ = 0;
  float max_logit_ = 0;
  mutable double weight_sum_ = 0;
  mutable bool weights_valid_ = false;
  int32_t chosen_ = -1;
  float chosen_logit_ = 0;
  bool has_last_ = false;

  double log_weight(float logit) const;  // log(weight), exact for the top logit
  void ensure_greedy_distribution() const;
};

}  // namespace sbits
