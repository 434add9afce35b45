// Allocation: one bitwidth per unit (a tile, or a whole tensor for --method layerwise) that
// minimises the predicted loss increase sum_u err_u(choice_u) under a byte budget.
//
//  greedy    the reference: every unit starts at its cheapest allowed choice; a max-heap hands
//            out upgrades by marginal gain (predicted loss removed per extra byte) along each
//            unit's lower convex hull of (bytes, err), skipping a step that no longer fits.
//            O(U log U) over all steps: exact greedy, a few ms for 10^5 tiles.
//  lagrange  the scalable form: for a price lambda per byte every unit independently picks the
//            hull point minimising err + lambda * bytes (embarrassingly parallel, no heap);
//            bisection on lambda finds the cheapest price whose total fits the budget. Its
//            choices are the greedy's up to the last few upgrades; tests and sbits-quantize's
//            report compare the two.
//
// Bytes are exact (the layout's size rule), so the allocation's total is the tensors' total.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "quantizer/sensitivity.h"

namespace sbits::quantizer {

struct AllocUnit {
  ErrorRow err{};                                  // predicted dL per choice (kTileBits order)
  std::array<uint64_t, kTileChoices> bytes{};      // bytes per choice
  uint8_t lo = 0, hi = kTileChoices - 1;           // allowed choices (a --keep pin: lo == hi)
};

struct Allocation {
  std::vector<uint8_t> choice;  // per unit, index into kTileBits
  uint64_t bytes = 0;           // sum of the chosen bytes
  double predicted = 0.0;       // sum of the chosen errors
};

enum class AllocMethod { greedy, lagrange };

// Throws QuantizerError when even the cheapest allowed choices exceed the budget.
Allocation allocate(const std::vector<AllocUnit>& units, uint64_t budget_bytes, AllocMethod method);

}  // namespace sbits::quantizer
