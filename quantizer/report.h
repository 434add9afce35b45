// sbits-quantize --report: a self-contained HTML page (inline SVG and CSS, no scripts, no
// network) describing one quantization run:
//  - settings, budget vs actual bits per weight and file size, calibration hash;
//  - a heatmap of the bitwidth of every tile of every 2-D tensor;
//  - the bitwidth histogram (share of weights) per tensor kind;
//  - predicted vs measured loss increase on calibration windows;
//  - greedy vs Lagrangian allocation.
// Errors: QuantizerError when the file cannot be written; the write is atomic (temp + rename).
#pragma once

#include <cmath>
#include <string>

#include "quantizer/quantize_file.h"

namespace sbits::quantizer {

struct ReportInput {
  std::string input_path, output_path;
  const QuantizeOptions* options = nullptr;
  const QuantizeReport* report = nullptr;
  const SbitsFile* output = nullptr;      // the written file (tile grids are read from it)
  double loss_before = std::nan("");      // mean NLL on the measurement windows, input model
  double loss_after = std::nan("");       // the same windows through the output model
  uint64_t measured_tokens = 0;
};

std::string render_report_html(const ReportInput& in);
void write_report(const std::string& path, const std::string& html);

}  // namespace sbits::quantizer
