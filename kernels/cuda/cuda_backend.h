// The CUDA backend: every op of kernels/backend.h on one NVIDIA GPU, weights and KV cache
// resident in device memory.
//
// Ownership: upload() copies the weight to the device, so the HostWeight bytes may be released
// afterwards. Weights, buffers and KV caches may outlive the Backend that made them (they share
// its device state); they must not be passed to another backend.
//
// Execution: ops are recorded, not launched, when called; host arguments (token ids, row
// positions, written data) are copied into a pinned staging area at once, so the caller's
// arrays may change after the call. read() and synchronize() run what was recorded. A recorded
// sequence identical to the one run just before (the same ops on the same buffers and sizes,
// only the staged values different: a decode step) is captured into a CUDA graph and later
// replayed with a single launch, so steady-state decoding does no per-op launch work on the
// host. SBITS_CUDA_GRAPHS=0 in the environment turns graphs off (every flush runs eagerly).
//
// Threading: one Backend may be called from several threads; its ops are serialized.
//
// Failure: invalid arguments throw KernelError before anything is recorded, with the op, the
// expected and the found values. CUDA and cuBLAS errors throw KernelError naming the call, the
// error and the source line; an error inside a kernel surfaces at the next read/synchronize.
//
// KV cache layout (K and V separate arrays): [layer][slot][kv_head][pos][head_dim], f16
// (default) or f32, as on the CPU, so one head's keys stream linearly.
#pragma once

#include <cstdint>
#include <memory>

#include "kernels/backend.h"

namespace sbits::kernels {

// Number of CUDA devices this process can use: 0 when there is no driver, no device, or the
// runtime cannot start. Never throws.
int cuda_device_count();

// Opens GPU `device` (0-based). Throws KernelError naming the device and the CUDA error when it
// does not exist or cannot be initialised.
std::unique_ptr<Backend> make_cuda_backend(int device = 0);

// What the backend did since it was made (for tests and benchmarks).
struct CudaStats {
  uint64_t ops = 0;             // ops recorded
  uint64_t eager_flushes = 0;   // recorded sequences launched op by op
  uint64_t graph_captures = 0;  // sequences captured into a CUDA graph
  uint64_t graph_launches = 0;  // sequences run by replaying a graph (captures included)
  uint64_t norm_folds = 0;      // rmsnorms folded into the matvecs around them (cuda_fuse.cpp)
  uint64_t swiglu_folds = 0;    // swiglus folded into their gate / up matvecs (cuda_fuse.cpp)
  uint64_t device_bytes = 0;    // device memory held now: weights, buffers, KV caches, scratch
};

// Throws KernelError when `backend` is not a CUDA backend.
CudaStats cuda_stats(const Backend& backend);

}  // namespace sbits::kernels
