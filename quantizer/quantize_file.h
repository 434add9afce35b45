// Quantizing a whole .sbits model into the tiled layout (the library behind sbits-quantize).
//
// First version: weight-only, no calibration. `--method uniform` gives every 2-D weight
// (token embedding and classifier included) one bitwidth, the largest whose whole-file bits per
// weight (all tensor bytes x 8 / parameters, norm weights and every byte of tile metadata
// included) is at most the budget; --keep rules pin tensors to a bitwidth.
//
// Errors: QuantizerError / FormatError with the tensor and the cause; the output is written
// atomically (SbitsWriter), so a failure leaves no partial file.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "formats/sbits_file.h"
#include "formats/tiled_layout.h"
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
  std::string method = "uniform";
  TileMethod tile_method = TileMethod::mse;
  std::vector<KeepRule> keep;
  TiledParams params;
  int threads = 1;
};

struct QuantizeReport {
  FilePlan plan;
  uint64_t file_bytes = 0;
  double seconds = 0.0;
};

// Progress: called after each tensor with (index, count, tensor plan, seconds so far).
using ProgressFn = std::function<void(size_t, size_t, const TensorPlan&, double)>;

QuantizeReport quantize_file(const std::string& in_path, const std::string& out_path, const QuantizeOptions& opt,
                             const ProgressFn& progress = {});

}  // namespace sbits::quantizer
