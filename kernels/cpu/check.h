// Argument checks for the CPU ops: every failure names the op and says what was expected and
// what was found, e.g. "matmul: x holds 100 floats, expected at least 512 (n=1 x 512 cols)".
#pragma once

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "kernels/backend.h"
#include "kernels/op_checks.h"

namespace sbits::kernels::cpu {

// fail, checked_mul, check_count and the other checks all backends share: kernels/op_checks.h.

}  // namespace sbits::kernels::cpu
