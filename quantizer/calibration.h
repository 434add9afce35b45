// Calibration: run the engine's own forward pass over calibration text and collect, for every
// linear layer's input, the statistics the quantizer needs:
//   sq       diag(XᵀX): the per-input-column importance used by the mse quantizer and the
//            sensitivity proxy;
//   blocks   the diagonal C x C blocks of XᵀX (C = tile columns), which is all that GPTQ inside
//            tiles uses. Only the blocks, never the full XᵀX: for a 70B model's FFN input
//            (28672 wide) the full matrix would be 3.3 GB per layer, the blocks are 15 MB.
// plus token counts (for the token embedding) and the model's mean calibration loss.
//
// Memory is a few MB per layer, independent of the number of calibration tokens; the model
// stays mmapped (the CPU backend runs float weights in place).
//
// Threading: calibrate() uses the backend's threads for the forward pass and `threads` for
// accumulating XᵀX blocks. Errors: QuantizerError / EngineError with context.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/forward.h"
#include "engine/model.h"

namespace sbits::quantizer {

// Statistics of one linear layer's input x ([tokens, width]).
struct InputMoments {
  int width = 0;
  int block = 0;                  // C: columns per XᵀX block (0: no blocks collected)
  uint64_t rows = 0;              // tokens accumulated
  std::vector<double> sq;         // [width]: sum over tokens of x_j^2
  std::vector<float> blocks;      // [ceil(width / block)][block][block], zero-padded

  void init(int width, int block);
  void accumulate(const float* x, int n, int threads);
  std::vector<float> mean_sq() const;  // sq / rows, as floats
};

inline constexpr int kLinearInputKinds = 5;  // LinearInput::attn_qkv .. classifier
inline constexpr std::array<const char*, kLinearInputKinds> kLinearInputNames = {
    "attn_qkv", "attn_output", "ffn_gate_up", "ffn_down", "classifier"};

struct CalibrationOptions {
  size_t tokens = 16384;  // calibration tokens (whole windows of seq_len)
  int seq_len = 512;      // tokens per window; each window starts a fresh sequence
  int block = 128;        // XᵀX block size (the tile columns); 0 = diag only
  int threads = 1;
  // Optional: the column permutation (perm[p] = original column) applied to an input before it
  // is accumulated, so that the statistics (XᵀX blocks above all) are those of a model whose
  // channels were reordered (quantizer/reorder.h). nullptr: the input's own order.
  std::function<const std::vector<int32_t>*(size_t layer, LinearInput which)> permutation;
};

struct CalibrationStats {
  // [layer][LinearInput], plus the classifier's input at layers[n_layers][classifier].
  std::vector<std::array<InputMoments, kLinearInputKinds>> layers;
  std::vector<uint64_t> token_counts;  // [vocab]: occurrences of each token among the inputs
  uint64_t tokens = 0;
  double loss = 0.0;                   // mean next-token NLL (nats) over the predicted tokens
  uint64_t text_hash = 0;              // xxh64 of the calibration text
  std::string text_name;

  // The statistics of the input of a 2-D weight named as in the .sbits file
  // (blk.N.attn_q/k/v, attn_output, ffn_gate/up/down, output); nullptr for others.
  const InputMoments* input_of(const std::string& tensor) const;
};

// Windows of seq_len tokens spread evenly over the text's token stream (the docs protocol's
// stream: documents split on "\n\n\n", each [BOS] ids [EOS]), enough for `tokens` tokens.
// Throws QuantizerError if the text has fewer than seq_len + 1 tokens.
std::vector<std::vector<int32_t>> calibration_windows(const Tokenizer& tok, std::string_view text, size_t tokens,
                                                      int seq_len);

// Runs every window through the model. progress(done, total) after each window.
CalibrationStats calibrate(const Model& model, const std::vector<std::vector<int32_t>>& windows,
                           const CalibrationOptions& options,
                           const std::function<void(size_t, size_t)>& progress = {});

// Mean next-token loss of the model in `model_path` (run on the CPU backend) over the first
// calibration windows of `text` worth `tokens` tokens: what --report measures before and after.
double calibration_loss(const std::string& model_path, std::string_view text, size_t tokens, int seq_len,
                        int threads, uint64_t* tokens_used = nullptr);

}  // namespace sbits::quantizer
