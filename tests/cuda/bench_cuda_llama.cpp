// bench_cuda_llama: decode and prefill throughput of a model on the CUDA backend against its
// bandwidth floor, and the device memory it holds with a long KV cache (a benchmark, not a
// test; made for the random Llama-2-7B shapes of sbits-gen-random-llama).
//
//   bench_cuda_llama MODEL.sbits --label NAME [-p 512] [-n 128] [-r 3] [--ctx 4096] [--rows 64]
//                    [--out-dir D] [--profile | --profile-prefill]
//
// Floor: a decode step reads every weight but the embedding once (the embedding: one row), so
// it takes at least (those bytes) / (device-to-device copy bandwidth, read + write, measured
// here). Decode is timed greedy with the choice on the device (Session::feed_greedy: one id
// back per token) and with the logits read back (Session::feed), after a prompt of -p tokens,
// median of -r runs of -n tokens. Prefill: -p tokens in one feed (chunks of --rows rows), median
// of -r. Memory: the CUDA backend's own device bytes (weights, KV cache of --ctx f16 positions,
// buffers, scratch) after both tests, and the process's share of the GPU (cudaMemGetInfo, the
// CUDA context included). Writes D/cuda_llama_<label>_rows<rows>_<gpu>.json and prints a
// Markdown row.
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/session.h"
#include "formats/sbits_file.h"
#include "kernels/cuda/cuda_backend.h"

namespace {

using namespace sbits;
using Clock = std::chrono::steady_clock;

#define BENCH_CHECK(x)                                                                                  \
  do {                                                                                                  \
    cudaError_t e_ = (x);                                                                               \
    if (e_ != cudaSuccess) throw std::runtime_error(std::string(#x) + ": " + cudaGetErrorString(e_)); \
  } while (0)

struct Options {
  std::string model, label = "model", out_dir = ".";
  int prompt = 512, decode = 128, reps = 3, ctx = 4096;
  int rows = 64;         // Session::max_batch_rows: prefill chunk (scratch grows with it)
  bool profile = false;          // one decode step between cudaProfilerStart/Stop (ncu --profile-from-start off)
  bool profile_prefill = false;  // one -p token prefill between cudaProfilerStart/Stop
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--label" && i + 1 < argc) o.label = argv[++i];
    else if (a == "--out-dir" && i + 1 < argc) o.out_dir = argv[++i];
    else if (a == "-p" && i + 1 < argc) o.prompt = std::stoi(argv[++i]);
    else if (a == "-n" && i + 1 < argc) o.decode = std::stoi(argv[++i]);
    else if (a == "-r" && i + 1 < argc) o.reps = std::stoi(argv[++i]);
    else if (a == "--ctx" && i + 1 < argc) o.ctx = std::stoi(argv[++i]);
    else if (a == "--rows" && i + 1 < argc) o.rows = std::stoi(argv[++i]);
    else if (a == "--profile") o.profile = true;
    else if (a == "--profile-prefill") o.profile_prefill = true;
    else if (o.model.empty() && a[0] != '-') o.model = a;
    else throw std::invalid_argument("usage: bench_cuda_llama MODEL.sbits --label NAME [-p N] [-n N] [-r N] [--ctx N] "
                                     "[--rows N] [--out-dir D] [--profile | --profile-prefill]");
  }
  if (o.model.empty() || o.prompt < 2 || o.decode < 1 || o.reps < 1) throw std::invalid_argument("bad options");
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Device-to-device copy of 1 GiB, bytes read + written per second, median of 15.
double copy_bandwidth() {
  const size_t bytes = size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  BENCH_CHECK(cudaMalloc(&a, bytes));
  BENCH_CHECK(cudaMalloc(&b, bytes));
  BENCH_CHECK(cudaMemset(a, 1, bytes));
  std::vector<double> t;
  for (int i = 0; i < 18; ++i) {
    BENCH_CHECK(cudaDeviceSynchronize());
    const auto t0 = Clock::now();
    BENCH_CHECK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
    BENCH_CHECK(cudaDeviceSynchronize());
    if (i >= 3) t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  BENCH_CHECK(cudaFree(a));
  BENCH_CHECK(cudaFree(b));
  return 2.0 * double(bytes) / median(t);
}

template <class F>
double seconds(F&& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Bytes a decode step must read: every tensor but the embedding (of which it reads one row).
double decode_weight_bytes(const std::string& path) {
  auto f = SbitsFile::open(path);
  double bytes = 0;
  for (const TensorInfo& t : f->tensors())
    if (t.name != "tok_embd") bytes += double(t.size);
  return bytes;
}

double embed_bytes(const std::string& path) {
  auto f = SbitsFile::open(path);
  for (const TensorInfo& t : f->tensors())
    if (t.name == "tok_embd") return double(t.size);
  return 0;
}

void run(const Options& o) {
  const double copy = copy_bandwidth();
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  size_t free0 = 0, total = 0;
  BENCH_CHECK(cudaMemGetInfo(&free0, &total));
  auto backend = kernels::make_cuda_backend(0);
  auto model = Model::load(o.model, *backend);
  Session s(*model, SessionOptions{o.ctx, kernels::KvType::f16, o.rows});
  std::vector<int32_t> prompt(size_t(o.prompt));
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t(1 + (i * 7919) % 31999);
  if (o.profile) {  // a few warm steps (graph captured), then one profiled decode step
    int32_t id = s.feed_greedy(std::span<const int32_t>(prompt).subspan(0, 16));
    for (int i = 0; i < 4; ++i) id = s.feed_greedy(std::span<const int32_t>(&id, 1));
    BENCH_CHECK(cudaProfilerStart());
    const double t = seconds([&] { id = s.feed_greedy(std::span<const int32_t>(&id, 1)); });
    BENCH_CHECK(cudaProfilerStop());
    std::printf("profiled decode step: %.3f ms wall (under the profiler)\n", t * 1e3);
    return;
  }
  if (o.profile_prefill) {  // warm (cuBLAS handles, scratch at full size), then one profiled prompt
    s.feed(prompt);
    s.reset();
    BENCH_CHECK(cudaProfilerStart());
    const double t = seconds([&] { s.feed(prompt); });
    BENCH_CHECK(cudaProfilerStop());
    std::printf("profiled prefill of %d tokens: %.3f ms wall (under the profiler)\n", o.prompt, t * 1e3);
    return;
  }
  const double floor_s = decode_weight_bytes(o.model) / copy;

  std::vector<double> pp, tg_device, tg_host;
  // Warm-up: the whole prompt (cuBLAS plans, scratch at the chunk size) and decode steps (graphs
  // captured), so that no repetition's time holds first-use costs.
  s.feed(prompt);
  for (int i = 0; i < 2; ++i) s.feed_greedy(std::span<const int32_t>(&prompt[size_t(i)], 1));
  for (int r = 0; r < o.reps; ++r) {
    s.reset();
    pp.push_back(seconds([&] { s.feed(prompt); }) / double(o.prompt));
    int32_t id = prompt.back();
    tg_device.push_back(seconds([&] {
                          for (int i = 0; i < o.decode; ++i) id = s.feed_greedy(std::span<const int32_t>(&id, 1));
                        }) /
                        double(o.decode));
    s.truncate(o.prompt);
    tg_host.push_back(seconds([&] {
                        for (int i = 0; i < o.decode; ++i) s.feed(std::span<const int32_t>(&prompt[size_t(i) % prompt.size()], 1));
                      }) /
                      double(o.decode));
  }
  // Ops recorded by one greedy decode step (about its kernels: a grouped matmul or a fused
  // conversion counts once); SBITS_CUDA_FUSE=0 turns the backend's grouping and fusion off.
  const uint64_t ops0 = kernels::cuda_stats(*backend).ops;
  {
    int32_t id = prompt.front();
    id = s.feed_greedy(std::span<const int32_t>(&id, 1));
  }
  const uint64_t ops_per_token = kernels::cuda_stats(*backend).ops - ops0;
  const char* fuse_env = std::getenv("SBITS_CUDA_FUSE");
  const bool fused = !(fuse_env && std::string(fuse_env) == "0");
  std::printf("%s: %llu ops per decode step, fusion %s\n", o.label.c_str(), (unsigned long long)ops_per_token,
              fused ? "on" : "off");
  size_t free1 = 0;
  BENCH_CHECK(cudaMemGetInfo(&free1, &total));
  const auto held = kernels::cuda_stats(*backend).device_bytes;
  const double tok = median(tg_device), tok_host = median(tg_host), pre = median(pp);
  nlohmann::json j = {{"gpu", prop.name},
                      {"model", o.model},
                      {"label", o.label},
                      {"params", model->parameter_count()},
                      {"bits_per_weight", model->bits_per_weight()},
                      {"copy_bandwidth_gbps", copy * 1e-9},
                      {"decode_weight_bytes", floor_s * copy},
                      {"decode_floor_seconds", floor_s},
                      {"decode_seconds_per_token_device_greedy", tok},
                      {"decode_seconds_per_token_host_logits", tok_host},
                      {"decode_tok_s", 1.0 / tok},
                      {"decode_ops_per_token", ops_per_token},
                      {"fusion", fused},
                      {"decode_fraction_of_floor", floor_s / tok},
                      {"prefill_tokens", o.prompt},
                      {"prefill_tok_s", 1.0 / pre},
                      {"kv_ctx", o.ctx},
                      {"max_batch_rows", o.rows},
                      {"kv_bytes", 2.0 * double(model->config().n_layers) * o.ctx *
                                       double(model->config().n_kv_heads * model->config().head_dim) * 2.0},
                      {"weight_bytes", floor_s * copy + embed_bytes(o.model)},
                      {"backend_device_bytes", held},
                      {"process_gpu_bytes", double(free0) - double(free1)},
                      {"fits_4gib", held <= (uint64_t(4) << 30)}};
  std::string gpu = prop.name;
  std::replace(gpu.begin(), gpu.end(), ' ', '_');
  std::ofstream(o.out_dir + "/cuda_llama_" + o.label + "_rows" + std::to_string(o.rows) + "_" + gpu + ".json")
      << j.dump(2) << "\n";
  std::printf("| %s | %.2f | %.0f | %.1f | %.1f%% | %.1f | %.0f | %.3f GiB |\n", o.label.c_str(),
              model->bits_per_weight(), 1.0 / tok, 1.0 / tok_host, 100.0 * floor_s / tok, floor_s * 1e3,
              1.0 / pre, double(held) / double(1u << 30));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    run(parse(argc, argv));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_llama: %s\n", e.what());
    return 1;
  }
}
