// Device memory, the op queue and its graph cache, the shared device state.
#include "kernels/cuda/device_state.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string_view>

namespace sbits::kernels::cuda {
namespace {

std::atomic<uint64_t> g_live_bytes{0};

// Graphs kept per backend: a server alternating between a few batch sizes keeps one per size.
constexpr size_t kMaxGraphs = 8;
// Ops recorded before a flush is forced, so a long prefill does not grow the record forever.
constexpr size_t kMaxRecordBytes = 4u << 20;
constexpr size_t kArenaAlign = 16;

struct RecordHeader {
  OpQueue::RunFn run;
  uint64_t size;
};
static_assert(sizeof(RecordHeader) == 16);

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

bool graphs_from_env() {
  const char* e = std::getenv("SBITS_CUDA_GRAPHS");
  return !(e && std::string_view(e) == "0");
}

}  // namespace

void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so that the backend stays usable
  std::ostringstream s;
  s << "cuda: " << expr << " failed: " << cudaGetErrorName(e) << " (" << cudaGetErrorString(e) << ") at " << file
    << ":" << line;
  throw KernelError(s.str());
}

void throw_cublas_error(cublasStatus_t e, const char* expr, const char* file, int line) {
  std::ostringstream s;
  s << "cuda: " << expr << " failed: " << cublasGetStatusName(e) << " (" << cublasGetStatusString(e) << ") at "
    << file << ":" << line;
  throw KernelError(s.str());
}

DeviceMemory::DeviceMemory(size_t bytes, const char* what) {
  if (bytes == 0) return;
  const cudaError_t e = cudaMalloc(&p_, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail(what, "cannot allocate ", bytes, " bytes of device memory (", free_b, " of ", total_b,
         " bytes free): ", cudaGetErrorString(e));
  }
  bytes_ = bytes;
  g_live_bytes += bytes;
}

DeviceMemory::~DeviceMemory() {
  if (p_) {
    cudaFree(p_);  // errors here cannot be reported (destructor); the memory is gone either way
    g_live_bytes -= bytes_;
  }
}

DeviceMemory& DeviceMemory::operator=(DeviceMemory&& o) noexcept {
  if (this != &o) {
    this->~DeviceMemory();
    p_ = o.p_;
    bytes_ = o.bytes_;
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

uint64_t DeviceMemory::live_bytes() { return g_live_bytes.load(); }

OpQueue::OpQueue(const ExecContext& ctx, size_t arena_bytes) : ctx_(ctx), arena_bytes_(arena_bytes) {
  graphs_enabled_ = graphs_from_env();
  CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&arena_host_), arena_bytes_, cudaHostAllocDefault));
  arena_dev_ = DeviceMemory(arena_bytes_, "cuda backend staging arena");
  CUDA_CHECK(cudaEventCreateWithFlags(&arena_done_, cudaEventDisableTiming));
}

OpQueue::~OpQueue() {
  for (Graph& g : graphs_) cudaGraphExecDestroy(g.exec);
  if (arena_done_) cudaEventDestroy(arena_done_);
  if (arena_host_) cudaFreeHost(arena_host_);
}

void OpQueue::append(RunFn run, const void* args, size_t bytes) {
  const RecordHeader h{run, bytes};
  const size_t at = ops_.size();
  ops_.resize(at + sizeof h + round_up(bytes, 16), 0);
  std::memcpy(ops_.data() + at, &h, sizeof h);
  std::memcpy(ops_.data() + at + sizeof h, args, bytes);
  ++stats.ops;
}

void OpQueue::wait_arena() {
  if (!arena_busy_) return;
  CUDA_CHECK(cudaEventSynchronize(arena_done_));
  arena_busy_ = false;
}

void OpQueue::begin_op(size_t stage_bytes) {
  if (stage_bytes + 2 * kArenaAlign > arena_bytes_)
    fail("cuda backend", "cannot stage ", stage_bytes, " bytes (the arena holds ", arena_bytes_, ")");
  if (ops_.size() > kMaxRecordBytes || round_up(arena_used_, kArenaAlign) + stage_bytes + kArenaAlign > arena_bytes_)
    flush();
}

void* OpQueue::stage(const void* host, size_t bytes) {
  wait_arena();  // the previous sequence's copy may still be reading the pinned bytes
  arena_used_ = round_up(arena_used_, kArenaAlign);
  if (arena_used_ + bytes > arena_bytes_) fail("cuda backend", "staging past the arena (begin_op not called)");
  const size_t at = arena_used_;
  if (bytes) std::memcpy(arena_host_ + at, host, bytes);
  arena_used_ += bytes;
  // The arena's size is part of the sequence (a graph's copy node has a fixed size): a record
  // with no run function carries it.
  const uint64_t used[2] = {arena_used_, 0};
  append(nullptr, used, sizeof used);
  --stats.ops;
  return arena_dev_.as<uint8_t>() + at;
}

void OpQueue::enqueue_all() {
  if (arena_used_ > 0)
    CUDA_CHECK(cudaMemcpyAsync(arena_dev_.get(), arena_host_, arena_used_, cudaMemcpyHostToDevice, ctx_.stream));
  size_t at = 0;
  while (at < ops_.size()) {
    RecordHeader h;
    std::memcpy(&h, ops_.data() + at, sizeof h);
    at += sizeof h;
    if (h.run) h.run(ops_.data() + at, ctx_);  // run == nullptr: a staging tag
    at += round_up(h.size, 16);
  }
}

OpQueue::Graph* OpQueue::find_graph() {
  for (Graph& g : graphs_)
    if (g.key == ops_) return &g;
  return nullptr;
}

void OpQueue::capture_and_launch() {
  cudaGraph_t graph = nullptr;
  CUDA_CHECK(cudaStreamBeginCapture(ctx_.stream, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue_all();
  } catch (...) {
    cudaStreamEndCapture(ctx_.stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    throw;
  }
  CUDA_CHECK(cudaStreamEndCapture(ctx_.stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  CUDA_CHECK(e);
  if (graphs_.size() >= kMaxGraphs) {  // drop the least recently used
    auto lru = std::min_element(graphs_.begin(), graphs_.end(),
                                [](const Graph& a, const Graph& b) { return a.last_use < b.last_use; });
    cudaGraphExecDestroy(lru->exec);
    graphs_.erase(lru);
  }
  graphs_.push_back(Graph{ops_, exec, ++use_clock_});
  ++stats.graph_captures;
  CUDA_CHECK(cudaGraphLaunch(exec, ctx_.stream));
  ++stats.graph_launches;
}

void OpQueue::flush() {
  if (empty()) return;
  CUDA_CHECK(cudaSetDevice(ctx_.device));  // the calling thread may have another device current
  if (Graph* g = graphs_enabled_ ? find_graph() : nullptr) {
    g->last_use = ++use_clock_;
    CUDA_CHECK(cudaGraphLaunch(g->exec, ctx_.stream));
    ++stats.graph_launches;
  } else if (graphs_enabled_ && ops_ == previous_) {
    capture_and_launch();  // the same sequence twice in a row: a loop worth a graph
  } else {
    enqueue_all();
    ++stats.eager_flushes;
  }
  CUDA_CHECK(cudaEventRecord(arena_done_, ctx_.stream));
  arena_busy_ = true;
  previous_.swap(ops_);
  ops_.clear();
  arena_used_ = 0;
}

void* Scratch::ensure(DeviceState& st, size_t bytes, const char* what) {
  if (mem_.bytes() >= bytes && mem_.get()) return mem_.get();
  st.drain();  // recorded ops may use the old block
  mem_ = DeviceMemory();
  // Grow by half again, so a slowly rising size does not reallocate at every call.
  mem_ = DeviceMemory(std::max<size_t>(bytes + bytes / 2, 4096), what);
  st.zero(mem_.get(), mem_.bytes());  // split-K counters rely on zeros
  return mem_.get();
}

DeviceState::DeviceState(int dev) : device(dev) {
  CUDA_CHECK(cudaSetDevice(device));
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  CUDA_CHECK(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking));
  ctx.sm_count = prop.multiProcessorCount;
  ctx.device = device;
  CUBLAS_CHECK(cublasCreate(&ctx.cublas));
  CUBLAS_CHECK(cublasSetStream(ctx.cublas, ctx.stream));
  // A fixed workspace: cuBLAS must not allocate while a graph is being captured. FP32 GEMMs
  // stay FP32 (no TF32), like the CPU reference.
  cublas_workspace_ = DeviceMemory(32u << 20, "cuBLAS workspace");
  CUBLAS_CHECK(cublasSetWorkspace(ctx.cublas, cublas_workspace_.get(), cublas_workspace_.bytes()));
  CUBLAS_CHECK(cublasSetMathMode(ctx.cublas, CUBLAS_DEFAULT_MATH));
  queue = std::make_unique<OpQueue>(ctx, size_t(4) << 20);
}

DeviceState::~DeviceState() {
  try {
    drain();
  } catch (...) {  // a destructor cannot report; the device work is abandoned
  }
  queue.reset();
  if (ctx.cublas) cublasDestroy(ctx.cublas);
  if (ctx.stream) cudaStreamDestroy(ctx.stream);
}

// On the backend's stream, so that the order with every recorded op is the stream's order (a
// plain cudaMemcpy/cudaMemset runs on the legacy stream, which a non-blocking stream does not
// wait for).
void DeviceState::copy_to_device(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx.stream));
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));  // the source may go away after return
}

void DeviceState::copy_to_host(void* dst, const void* src, size_t bytes) {
  drain();
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx.stream));
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

void DeviceState::zero(void* dst, size_t bytes) { CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, ctx.stream)); }

void DeviceState::drain() {
  std::lock_guard<std::recursive_mutex> lock(mutex);
  if (before_drain) before_drain();
  CUDA_CHECK(cudaSetDevice(device));
  queue->flush();
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

}  // namespace sbits::kernels::cuda
