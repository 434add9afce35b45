// sbits-quantize --cache DIR: the calibration statistics and sensitivities of one (model,
// calibration text, settings) saved to disk, so that quantizing the same model at several
// budgets or with several methods pays for the forward and backward passes once.
//
// File DIR/stats-<key>.bin, little-endian, written atomically (temp + rename):
//   char[8]  magic "SBQSTAT1"
//   u64      key: xxh64 over the model's tensor names and hashes, the calibration text's hash,
//            the token count, window length and sensitivity kind
//   u32 n_layers_plus_1; per layer, 5 inputs: u32 width, u64 rows, f64 sq[width]
//   u64 vocab, u64 token_counts[vocab], u64 tokens, f64 loss
//   u32 tensors; per tensor: u32 name_len, name, u64 rows, f32 r[rows], u64 cols, f32 c[cols]
//   u64 xxh64 of everything above
// A file that does not match (other key, truncated, bad checksum) is ignored and rewritten.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "formats/sbits_file.h"
#include "quantizer/calibration.h"
#include "quantizer/sensitivity.h"

namespace sbits::quantizer {

struct CachedStats {
  CalibrationStats stats;  // diag statistics only (no XᵀX blocks)
  std::map<std::string, TensorSensitivity> sens;
};

uint64_t stats_cache_key(const SbitsFile& model, uint64_t calib_hash, size_t calib_tokens, int seq_len,
                         const std::string& sensitivity);
std::string stats_cache_path(const std::string& dir, uint64_t key);

// nullopt when the file is missing or does not match `key` (never throws for a bad file).
std::optional<CachedStats> load_stats_cache(const std::string& path, uint64_t key);
// Throws QuantizerError when the file cannot be written.
void save_stats_cache(const std::string& path, uint64_t key, const CachedStats& c);

}  // namespace sbits::quantizer
