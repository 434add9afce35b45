// Quantizing a whole .sbits model into the tiled layout (the library behind sbits-quantize).
//
// Methods (the budget is whole-file bits per weight: all tensor bytes x 8 / parameters, norm
// weights and every byte of tile metadata included, exact; or --size in bytes):
//  uniform    one bitwidth for every 2-D weight, the largest that fits; weight-only unless a
//             calibration text is given (then the mse/gptq quantizers use its statistics).
//  layerwise  one bitwidth per matrix, allocated by greedy marginal gain of predicted loss.
//  greedy     one bitwidth per tile (ScaleBITS-style mixed precision): calibration statistics,
//             a sensitivity model (quantizer/sensitivity.h), channel reordering folded into the
//             weights (quantizer/reorder.h) and greedy allocation under the budget
//             (quantizer/allocate.h). The pipeline is in mixed_precision.cpp.
// --keep rules pin tensors to a bitwidth in every method.
//
// Memory: one tensor in f32 at a time plus per-tile error tables and calibration statistics;
// the input stays mmapped. Errors: QuantizerError / FormatError / EngineError with the tensor
// and the cause; the output is written atomically (SbitsWriter), so a failure leaves no file.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "formats/sbits_file.h"
#include "formats/tiled_layout.h"
#include "quantizer/allocate.h"
#include "quantizer/tile_quant.h"

namespace sbits::quantizer {

// --keep NAME=BITS: tensors whose name matches NAME ('*' matches any run of characters) get
// BITS (2, 3, 4, 5, 6, 8, or 16 = f16 tiles) instead of the uniform bitwidth.
struct KeepRule {
  std::string pattern;
  int bits = 16;
};
KeepRule parse_keep_rule(const std::string& text);  // "output=8"; throws QuantizerError
bool glob_match(const std::string& pattern, const std::string& name);

// What happens to each tensor, and the exact bytes that gives.
struct TensorPlan {
  std::string name;
  bool quantize = false;  // false: copied as it is (1-D norm weights, non-float tensors)
  int bits = 0;           // tile bitwidth when quantized
  uint64_t bytes = 0;     // tensor bytes in the output
  uint64_t params = 0;    // counted in bpw (0 for u8/i32 containers, as sbits-inspect counts)
  std::vector<uint8_t> tile_bits;  // per tile (mixed methods); empty: `bits` everywhere
  double predicted = 0.0;          // predicted loss increase of this tensor (mixed methods)
};
struct FilePlan {
  int bits = 0;           // the uniform bitwidth
  uint64_t tensor_bytes = 0, params = 0;
  double bpw = 0.0;
  std::vector<TensorPlan> tensors;
};

// The plan for one uniform bitwidth; and the largest bitwidth (16, 8, 6, 5, 4, 3, 2) whose plan
// has bpw <= budget (throws QuantizerError naming the smallest bpw reachable otherwise).
FilePlan plan_uniform_bits(const SbitsFile& in, int bits, const std::vector<KeepRule>& keep, const TiledParams& p);
FilePlan plan_uniform(const SbitsFile& in, double bpw_budget, const std::vector<KeepRule>& keep,
                      const TiledParams& p);

struct QuantizeOptions {
  double bpw = 4.0;
  uint64_t size_bytes = 0;         // --size: a whole-file byte budget instead of --bpw (0: unused)
  std::string method = "uniform";  // uniform | layerwise | greedy
  TileMethod tile_method = TileMethod::gptq;  // mse without --calib
  std::vector<KeepRule> keep;
  TiledParams params;
  int threads = 1;
  // Calibration (required by layerwise, greedy and gptq).
  std::string calib_path;
  size_t calib_tokens = 16384;
  int calib_seq = 512;
  std::string sensitivity = "grad";   // grad | proxy (docs/SENSITIVITY.md: grad predicts better)
  std::string fisher = "sampled";     // grad: sampled (true Fisher) | empirical (next-token targets)
  size_t grad_tokens = 4096;          // grad: tokens of the backward pass (0: all calibration tokens)
  std::string cache_dir;              // --cache: reuse calibration statistics across runs
  bool reorder = true;                // fold channel permutations in (greedy and layerwise)
  AllocMethod alloc = AllocMethod::greedy;
};

// What the mixed-precision pipeline measured along the way (zeros for weight-only uniform).
struct MixedStats {
  double calib_loss = 0.0;             // mean NLL of the input model on the calibration windows
  uint64_t calib_tokens = 0;
  uint64_t calib_hash = 0;             // xxh64 of the calibration text
  double predicted = 0.0;              // predicted loss increase of the chosen allocation
  double predicted_greedy = 0.0, predicted_lagrange = 0.0;  // both allocators on the same units
  uint64_t bytes_greedy = 0, bytes_lagrange = 0;
  uint64_t budget_bytes = 0;           // for the allocated (quantized) tensors
  bool reordered = false;
  double seconds_calibration = 0.0, seconds_tables = 0.0, seconds_write = 0.0;
};

struct QuantizeReport {
  FilePlan plan;
  MixedStats mixed;
  uint64_t file_bytes = 0;
  double seconds = 0.0;
};

// Progress of a phase: (phase name, done, total, seconds so far).
using ProgressFn = std::function<void(const char*, size_t, size_t, double)>;

// The --bpw budget, or the one --size implies (tensor bytes x 8 / parameters).
double budget_bpw(const SbitsFile& in, const QuantizeOptions& opt);

// IN is a float .sbits file or a Hugging Face checkpoint directory (imported to a temporary
// file beside OUT first, removed afterwards).
QuantizeReport quantize_file(const std::string& in_path, const std::string& out_path, const QuantizeOptions& opt,
                             const ProgressFn& progress = {});

}  // namespace sbits::quantizer
