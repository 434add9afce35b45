// What sbits-inspect prints, as text or as one JSON object.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "formats/model_config.h"
#include "formats/sbits_file.h"

namespace sbits::tools {

struct InspectSummary {
  uint64_t params = 0;        // elements of weight tensors (float and quantized layouts)
  uint64_t tensor_bytes = 0;  // bytes of all tensors
  double bpw = 0.0;           // tensor_bytes * 8 / params
  bool tensors_verified = false;
  std::optional<ModelConfig> model;  // when the file declares general.architecture
};

InspectSummary summarize(const SbitsFile& f, bool verified);
nlohmann::json inspect_json(const SbitsFile& f, const InspectSummary& s);
std::string inspect_text(const SbitsFile& f, const InspectSummary& s);

}  // namespace sbits::tools
