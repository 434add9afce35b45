// Perplexity of a model on a text, under two protocols.
//
//  docs:     the protocol of ../shared/data/README.md (corpus_val): split the text on "\n\n\n"
//            into documents, each [BOS] + ids + [EOS], concatenated; windows ids[s : s+ctx+1]
//            for s = 0, ctx, 2ctx, ...: the first ctx tokens are the input and every token after
//            the window's first is predicted once.
//  llamacpp: llama.cpp's perplexity tool: [BOS] + ids of the whole text, cut into consecutive
//            chunks of ctx tokens whose first token is replaced by BOS; only the second half of
//            each chunk is scored (each token with at least ctx/2 tokens of context).
#pragma once

#include <functional>
#include <string_view>
#include <vector>

#include "engine/model.h"

namespace sbits {

enum class PerplexityProtocol { docs, llamacpp };

struct PerplexityOptions {
  PerplexityProtocol protocol = PerplexityProtocol::docs;
  int ctx = 512;
  size_t max_tokens = 0;  // stop after this many scored tokens (0: all)
  kernels::KvType kv_type = kernels::KvType::f16;
  int batch_rows = 64;
  // Called after each window with (tokens scored so far, tokens to score in all).
  std::function<void(size_t, size_t)> progress;
};

struct PerplexityResult {
  size_t tokens = 0;     // tokens scored
  double nll = 0;        // mean negative log-likelihood (nats)
  double ppl = 0;        // exp(nll)
  double ppl_error = 0;  // one standard error of ppl (delta method on the mean NLL)
};

// The token stream a protocol scores (documents and BOS/EOS placement as described above).
std::vector<int32_t> perplexity_tokens(const Tokenizer& tok, std::string_view text, PerplexityProtocol protocol);

PerplexityResult evaluate_perplexity(const Model& model, const std::vector<int32_t>& ids,
                                     const PerplexityOptions& options);

}  // namespace sbits
