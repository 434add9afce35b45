// Helpers shared by quantize_file.cpp (plans, weight-only uniform) and mixed_precision.cpp
// (the calibrated pipeline). Internal to the quantizer library.
#pragma once

#include <string>
#include <vector>

#include "quantizer/quantize_file.h"

namespace sbits::quantizer::detail {

inline constexpr const char* kToolName = "sbits-quantize 0.2.0";

bool counts_as_params(uint32_t layout);          // u8/i32 are containers, not weights
bool quantizable(const TensorInfo& t);           // 2-D float tensors
int bits_for(const std::string& name, int uniform, const std::vector<KeepRule>& keep);  // first --keep match
std::vector<float> to_f32(const SbitsFile& f, const TensorInfo& t);
// The input's metadata plus the quantizer's settings (quantizer.*).
void write_metadata(Metadata& m, const SbitsFile& in, const QuantizeOptions& opt, const FilePlan& plan,
                    const MixedStats* mixed);
// Whole-file byte budget -> tensor byte budget: --size minus everything that is not tensor data.
uint64_t tensor_byte_budget(const SbitsFile& in, const QuantizeOptions& opt, uint64_t params);

// The calibrated pipeline (mixed_precision.cpp).
QuantizeReport quantize_mixed(const SbitsFile& in, const std::string& out_path, const QuantizeOptions& opt,
                              const ProgressFn& progress);

}  // namespace sbits::quantizer::detail
