// Device memory, the op queue with its CUDA-graph cache, and the state every CUDA resource
// shares (stream, cuBLAS handle, queue, scratch).
//
// The op queue: each op of the backend is recorded as (run function, argument bytes). The
// argument struct holds everything the launch depends on (device pointers, sizes, scalars);
// values that change from call to call without changing the launch (token ids, positions,
// written data) are staged in a pinned arena and reach the device through one copy at the start
// of the sequence. So two recorded sequences with equal bytes launch the same kernels with the
// same arguments, and differ only in what the arena copy brings: that is what makes replaying a
// captured graph for a new decode step correct, and why the bytes are the graph's key.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"

namespace sbits::kernels::cuda {

// cudaMalloc'd memory (never managed memory: see the device notes on oversubscription).
class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(size_t bytes, const char* what);
  ~DeviceMemory();
  DeviceMemory(DeviceMemory&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }
  DeviceMemory& operator=(DeviceMemory&& o) noexcept;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  // Bytes held by all live DeviceMemory objects of this process.
  static uint64_t live_bytes();

  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }
  template <class T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

struct ExecContext {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  int sm_count = 1;
  int device = 0;
  bool pdl = false;  // launch_pdl: programmatic dependent launch (SBITS_CUDA_PDL)
};

// The recorded ops of one sequence and the graphs of sequences seen before.
class OpQueue {
 public:
  using RunFn = void (*)(const void* args, const ExecContext& ctx);

  OpQueue(const ExecContext& ctx, size_t arena_bytes);
  ~OpQueue();
  OpQueue(const OpQueue&) = delete;
  OpQueue& operator=(const OpQueue&) = delete;

  // Records run(args). A must be trivially copyable and built with zeroed padding (zeroed()),
  // since its bytes are compared.
  template <class A>
  void push(RunFn run, const A& args) {
    static_assert(std::is_trivially_copyable_v<A>, "op arguments are compared as bytes");
    append(run, &args, sizeof args);
  }

  // Called at the start of every op with the bytes it will stage: flushes what is recorded
  // when the arena or the record is full, so that an op's staged data and its launch always
  // belong to the same sequence.
  void begin_op(size_t stage_bytes);
  // Copies `bytes` host bytes into the arena (room reserved by begin_op); returns the device
  // address they will have when the recorded ops run.
  void* stage(const void* host, size_t bytes);
  // Largest staging one op may do (bigger writes bypass the arena).
  size_t max_stage() const { return arena_bytes_ / 2; }

  bool empty() const { return ops_.empty() && arena_used_ == 0; }
  // Launches what was recorded (replaying a graph when the sequence is known) and clears it.
  // Returns without waiting for the device.
  void flush();

  void set_graphs_enabled(bool on) { graphs_enabled_ = on; }
  CudaStats stats;

 private:
  struct Graph {
    std::vector<uint8_t> key;
    cudaGraphExec_t exec = nullptr;
    uint64_t last_use = 0;
  };

  void append(RunFn run, const void* args, size_t bytes);
  void enqueue_all();  // the arena copy and every op, in order, on the stream
  Graph* find_graph();
  void capture_and_launch();
  void wait_arena();

  ExecContext ctx_;
  std::vector<uint8_t> ops_;       // records: [RunFn][u64 size][args, padded to 16 bytes]...
  std::vector<uint8_t> previous_;  // the sequence flushed last (eagerly)
  std::vector<Graph> graphs_;
  uint64_t use_clock_ = 0;
  bool graphs_enabled_ = true;

  size_t arena_bytes_ = 0;
  size_t arena_used_ = 0;
  uint8_t* arena_host_ = nullptr;  // pinned
  DeviceMemory arena_dev_;
  cudaEvent_t arena_done_ = nullptr;  // the last flush's work (the arena copy included) is done
  bool arena_busy_ = false;
};

// Scratch device memory that grows on demand. Growing waits for the device (recorded ops may
// use the old block) before freeing the old block.
class Scratch {
 public:
  void* ensure(class DeviceState& st, size_t bytes, const char* what);

 private:
  DeviceMemory mem_;
};

// Shared by the backend and every resource it made (see cuda_backend.h, "Ownership").
class DeviceState {
 public:
  explicit DeviceState(int device);
  ~DeviceState();

  // Runs what is recorded and waits for the device: before reading results, and before freeing
  // memory that recorded ops may still use.
  void drain();
  // Copies ordered with the recorded ops (on the backend's stream); both wait for completion.
  void copy_to_device(void* dst, const void* src, size_t bytes);
  void copy_to_host(void* dst, const void* src, size_t bytes);
  // Zeroes device memory, ordered before every op recorded later.
  void zero(void* dst, size_t bytes);

  int device = 0;
  cudaDeviceProp prop{};
  ExecContext ctx;
  std::unique_ptr<OpQueue> queue;
  std::recursive_mutex mutex;  // serializes ops and resource destruction
  uint64_t next_version = 1;   // write stamps of buffers (see CudaBuffer::version)
  // Called (under the mutex) before every drain: the backend records the ops it holds back
  // (cuda_fuse.cpp), so that nothing freed or read after a drain is still wanted by them.
  std::function<void()> before_drain;

  // x as f16 (+ group sums, + variant 6's digits) for the tiled kernels and cuBLAS, split-K
  // partial sums and their counters, attention partials, dequantized weight chunks for prefill,
  // top_k's results.
  Scratch x_half, x_sum, x_q, fold_xq, fold_ss, swiglu_xq, swiglu_counters, partial, counters, attn, attn_counters,
      dequant, topk, topk_counters;

 private:
  DeviceMemory cublas_workspace_;
};

// A value of A with every byte zero, padding included, for OpQueue::push.
template <class A>
A zeroed() {
  static_assert(std::is_trivially_copyable_v<A>);
  A a;
  std::memset(static_cast<void*>(&a), 0, sizeof a);
  return a;
}

}  // namespace sbits::kernels::cuda
