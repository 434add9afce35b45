// bench_cuda_matvec: effective bandwidth of the CUDA backend's tiled matvec (decode, n rows of
// x) against the device-to-device copy bandwidth measured in the same run.
//
// Shapes 4096x4096, 11008x4096, 4096x11008, 32000x4096; tiles of 64 x 128 with one scale
// group, all 2-, 3-, 4- or 8-bit, or a mixed allocation of 2.5 bits per weight including the
// scales (80% 2-bit, 15% 3-bit, 5% 4-bit tiles, placed at random). Each configuration is
// uploaded in as many copies as make >= 256 MiB (several times the L2), and the matvecs rotate
// over them, so every byte comes from device memory. A round of matvecs is recorded and run
// through the backend like a decode step: the first round runs eagerly, the second is captured
// into a CUDA graph, and the timed rounds replay it (time per matvec = round time / count,
// median of rounds; graph launch included).
//
// Bandwidth counts the bytes of the tiled tensor (codes, scales, tile table); the copy counts
// bytes read plus bytes written. Writes a table to stdout and JSON + Markdown to
// bench/results/cuda_matvec_<gpu>.{json,md} (or --out-dir).
//
// Options: --variants 2,4,5    kernel variants to run (SBITS_CUDA_MMA_VARIANT; 4 and 5 need sm_90)
//          --warps 8           warps-per-SM targets to try (SBITS_CUDA_MMA_WARPS_PER_SM), list
//          --pdl 0             programmatic dependent launch off/on (SBITS_CUDA_PDL), list
//          --n 1               rows of x, list
//          --quick             2 shapes only
//          --only RxC:B        one configuration (B = 0 for the mixed one), e.g. 32000x4096:2
//          --group G           G matvecs in a row that read the same x into G different outputs
//                              (q/k/v: 3; gate/up: 2), which the backend launches as one grouped
//                              kernel (kernels/cuda/cuda_fuse.cpp; SBITS_CUDA_FUSE=0: one launch
//                              each); time and bandwidth are still per matvec
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/quant/tiled.h"

namespace {

using namespace sbits::kernels;
using Clock = std::chrono::steady_clock;

#define BENCH_CHECK(x)                                                                     \
  do {                                                                                     \
    cudaError_t e_ = (x);                                                                  \
    if (e_ != cudaSuccess) throw std::runtime_error(std::string(#x) + ": " + cudaGetErrorString(e_)); \
  } while (0)

struct Options {
  std::vector<int> variants = {2, 4, 5};
  std::vector<int> warps = {8};
  std::vector<int> rows_of_x = {1};
  std::vector<int> pdl = {0};
  bool quick = false;
  std::string only;
  int group = 1;
  std::string out_dir = std::string(SBITS_SOURCE_DIR) + "/bench/results";
};

std::vector<int> parse_list(const char* s) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::stoi(item));
  return v;
}

// A tiled weight with random codes and sane scales (the values do not matter for speed, but
// they are finite and non-zero, as METHOD.md asks).
struct HostTiled {
  std::vector<uint8_t> storage;
  const uint8_t* data = nullptr;
  size_t bytes = 0;
  std::vector<uint8_t> bits;
  std::vector<uint64_t> offsets;
  quant::TiledDesc desc;
};

HostTiled make_tiled(int64_t rows, int64_t cols, const std::vector<uint8_t>& table, uint32_t seed) {
  HostTiled t;
  quant::TiledDesc& d = t.desc;
  d.rows = rows, d.cols = cols, d.tile_rows = 64, d.tile_cols = 128, d.group = 128;
  d.tiles_r = (rows + 63) / 64, d.tiles_c = (cols + 127) / 128;
  t.bits = table;
  t.offsets.resize(table.size());
  uint64_t off = quant::pad16(table.size());
  for (int64_t tr = 0; tr < d.tiles_r; ++tr)
    for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
      const size_t i = size_t(tr * d.tiles_c + tc);
      t.offsets[i] = off;
      off += quant::tile_bytes(std::min<int64_t>(64, rows - tr * 64), std::min<int64_t>(128, cols - tc * 128), 128,
                               table[i]);
    }
  t.bytes = off;
  t.storage.assign(off + 16, 0);
  uint8_t* base = t.storage.data() + (16 - reinterpret_cast<uintptr_t>(t.storage.data()) % 16) % 16;
  t.data = base;
  std::memcpy(base, table.data(), table.size());
  std::mt19937_64 rng(seed);
  for (uint64_t i = quant::pad16(table.size()); i + 8 <= off; i += 8) {
    const uint64_t r = rng();
    std::memcpy(base + i, &r, 8);
  }
  d.bits = t.bits.data(), d.offsets = t.offsets.data(), d.data = base;
  const uint16_t scale = 0x2000, min = 0xA400;  // 2^-7 and -2^-6 as f16
  for (int64_t tr = 0; tr < d.tiles_r; ++tr)
    for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
      const quant::TileView v = quant::tile_view(d, tr, tc);
      if (v.bits == 16) continue;
      auto* s = const_cast<uint16_t*>(v.scales);
      for (int k = 0; k < v.rows * v.groups; ++k) s[2 * k] = scale, s[2 * k + 1] = min;
    }
  return t;
}

std::vector<uint8_t> make_table(int64_t tiles, int bits, uint32_t seed) {
  std::vector<uint8_t> t(static_cast<size_t>(tiles), static_cast<uint8_t>(bits));
  if (bits > 0) return t;
  std::mt19937 rng(seed);  // mixed: 80% 2-bit, 15% 3-bit, 5% 4-bit = 2.25 + 0.25 (scales) bpw
  for (auto& b : t) {
    const unsigned r = rng() % 100;
    b = r < 80 ? 2 : r < 95 ? 3 : 4;
  }
  return t;
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
  cudaEvent_t e0, e1;
  BENCH_CHECK(cudaEventCreate(&e0));
  BENCH_CHECK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < 18; ++i) {
    BENCH_CHECK(cudaEventRecord(e0));
    BENCH_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
    BENCH_CHECK(cudaEventRecord(e1));
    BENCH_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    BENCH_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 3) t.push_back(ms * 1e-3);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * double(bytes) / median(t);
}

struct Result {
  int64_t rows, cols;
  std::string config;
  int variant, warps, pdl, n;
  double bytes, seconds, gbps;
};

// Seconds per matvec: rounds of `per_round` matvecs rotating over the copies.
double time_matvecs(Backend& be, const std::vector<std::unique_ptr<Weight>>& ws, const Buffer& x,
                    const std::vector<std::unique_ptr<Buffer>>& ys, int n, int per_round) {
  std::vector<double> t;
  per_round = (per_round + int(ys.size()) - 1) / int(ys.size()) * int(ys.size());
  for (int round = 0; round < 9; ++round) {
    for (int i = 0; i < per_round; ++i) be.matmul(*ws[size_t(i) % ws.size()], x, n, *ys[size_t(i) % ys.size()], false);
    const auto t0 = Clock::now();
    be.synchronize();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (round >= 3) t.push_back(s / per_round);  // 0: eager, 1: capture, 2: first replay
  }
  return median(t);
}

std::string sanitize(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--variants" && i + 1 < argc) o.variants = parse_list(argv[++i]);
    else if (a == "--warps" && i + 1 < argc) o.warps = parse_list(argv[++i]);
    else if (a == "--pdl" && i + 1 < argc) o.pdl = parse_list(argv[++i]);
    else if (a == "--n" && i + 1 < argc) o.rows_of_x = parse_list(argv[++i]);
    else if (a == "--out-dir" && i + 1 < argc) o.out_dir = argv[++i];
    else if (a == "--only" && i + 1 < argc) o.only = argv[++i];
    else if (a == "--quick") o.quick = true;
    else if (a == "--group" && i + 1 < argc) o.group = std::stoi(argv[++i]);
    else throw std::invalid_argument("usage: bench_cuda_matvec [--variants L] [--warps L] [--pdl L] [--n L] "
                                     "[--out-dir D] [--quick] [--only RxC:B]");
  }
  return o;
}

// Every (variant, warps, pdl, n) of one weight: a fresh backend per setting (it reads its knobs
// when it is made), the weight uploaded in enough copies to defeat the L2.
void bench_weight(const Options& o, const HostTiled& t, const std::string& config, double copy,
                  std::vector<Result>& out) {
  HostWeight hw;
  hw.type = WeightType::tiled, hw.rows = t.desc.rows, hw.cols = t.desc.cols, hw.data = t.data, hw.bytes = t.bytes;
  hw.tiled = &t.desc;
  const int copies = int(std::max<size_t>(2, ((size_t(256) << 20) + t.bytes - 1) / t.bytes));
  for (int variant : o.variants)
    for (int warps : o.warps)
      for (int pdl : o.pdl) {
        setenv("SBITS_CUDA_MMA_VARIANT", std::to_string(variant).c_str(), 1);
        setenv("SBITS_CUDA_MMA_WARPS_PER_SM", std::to_string(warps).c_str(), 1);
        setenv("SBITS_CUDA_PDL", std::to_string(pdl).c_str(), 1);
        auto be = make_cuda_backend(0);
        std::vector<std::unique_ptr<Weight>> ws;
        for (int c = 0; c < copies; ++c) ws.push_back(be->upload(hw));
        for (int n : o.rows_of_x) {
          std::vector<float> xv(size_t(n * hw.cols));
          std::mt19937 rng(5);
          std::normal_distribution<float> nd;
          for (float& v : xv) v = nd(rng);
          auto x = be->alloc(xv.size());
          std::vector<std::unique_ptr<Buffer>> ys;
          for (int g = 0; g < o.group; ++g) ys.push_back(be->alloc(size_t(n * hw.rows)));
          be->write(*x, xv.data(), xv.size());
          const double sec = time_matvecs(*be, ws, *x, ys, n, std::max(copies, 64));
          const Result r{hw.rows, hw.cols, config, variant, warps, pdl, n, double(t.bytes), sec,
                         double(t.bytes) / sec * 1e-9};
          out.push_back(r);
          std::printf("%6lld x %-6lld %-14s v%d w%-3d pdl%d n%d  %8.2f us  %7.0f GB/s  %5.1f%% of copy\n",
                      (long long)r.rows, (long long)r.cols, config.c_str(), variant, warps, pdl, n, sec * 1e6, r.gbps,
                      100.0 * r.gbps * 1e9 / copy);
          std::fflush(stdout);
        }
        if (cuda_stats(*be).graph_launches == 0) std::printf("  (warning: no graph launches)\n");
      }
}

// The best setting per (shape, tiles, n) as Markdown, every result as JSON.
void write_results(const Options& o, const std::string& gpu, double copy, const std::vector<Result>& results) {
  std::ostringstream md;
  md << "# CUDA tiled matvec, " << gpu << ", " << utc_now() << "\n\n"
     << "Copy bandwidth (device to device, read + write): " << int(copy * 1e-9) << " GB/s. "
     << "Effective bandwidth counts the bytes of the tiled tensor once per matvec; best kernel variant.\n\n"
     << "| shape | tiles | n | us | GB/s | % of copy | variant, warps/SM, PDL |\n|---|---|---|---|---|---|---|\n";
  nlohmann::json j = {{"benchmark", "cuda_matvec"}, {"gpu", gpu}, {"date", utc_now()},
                      {"copy_bandwidth_gbps", copy * 1e-9}, {"results", nlohmann::json::array()}};
  for (const Result& r : results)
    j["results"].push_back({{"rows", r.rows}, {"cols", r.cols}, {"tiles", r.config}, {"variant", r.variant},
                            {"warps_per_sm", r.warps}, {"pdl", r.pdl}, {"n", r.n}, {"bytes", r.bytes},
                            {"seconds", r.seconds}, {"gbps", r.gbps}, {"fraction_of_copy", r.gbps * 1e9 / copy}});
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    const Result* best = &r;
    bool first = true;
    for (size_t k = 0; k < results.size(); ++k) {
      const Result& q = results[k];
      if (q.rows != r.rows || q.cols != r.cols || q.config != r.config || q.n != r.n) continue;
      if (k < i) first = false;
      if (q.gbps > best->gbps) best = &q;
    }
    if (!first) continue;
    char line[256];
    std::snprintf(line, sizeof line, "| %lldx%lld | %s | %d | %.2f | %.0f | %.1f%% | %d, %d, %d |\n", (long long)r.rows,
                  (long long)r.cols, r.config.c_str(), r.n, best->seconds * 1e6, best->gbps,
                  100.0 * best->gbps * 1e9 / copy, best->variant, best->warps, best->pdl);
    md << line;
  }
  const std::string stem =
      o.out_dir + "/cuda_matvec_" + (o.group > 1 ? "group" + std::to_string(o.group) + "_" : "") + sanitize(gpu);
  std::ofstream(stem + ".json") << j.dump(2) << "\n";
  std::ofstream(stem + ".md") << md.str();
  std::printf("\n%s\nwrote %s.json and .md\n", md.str().c_str(), stem.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    if (cuda_device_count() == 0) {
      std::fprintf(stderr, "bench_cuda_matvec: no CUDA device\n");
      return 1;
    }
    cudaDeviceProp prop{};
    BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
    const double copy = copy_bandwidth();
    std::printf("GPU: %s, copy bandwidth (read + write) %.0f GB/s\n", prop.name, copy * 1e-9);
    struct Shape {
      int64_t rows, cols;
    };
    std::vector<Shape> shapes = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {32000, 4096}};
    if (o.quick) shapes = {{4096, 4096}, {11008, 4096}};
    std::vector<Result> results;
    for (const Shape& s : shapes) {
      for (int bits : {2, 3, 4, 8, 0}) {  // 0: mixed 2.5 bpw
        const std::string key = std::to_string(s.rows) + "x" + std::to_string(s.cols) + ":" + std::to_string(bits);
        if (!o.only.empty() && o.only != key) continue;
        const int64_t tiles = ((s.rows + 63) / 64) * ((s.cols + 127) / 128);
        const HostTiled t = make_tiled(s.rows, s.cols, make_table(tiles, bits, 7), 11);
        std::string config = bits ? std::to_string(bits) + "-bit" : "mixed 2.5 bpw";
        if (o.group > 1) {
          const char* fuse = std::getenv("SBITS_CUDA_FUSE");
          config += " x" + std::to_string(o.group) + (fuse && std::string(fuse) == "0" ? " unfused" : " grouped");
        }
        bench_weight(o, t, config, copy, results);
      }
    }
    write_results(o, prop.name, copy, results);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_matvec: %s\n", e.what());
    return 1;
  }
  return 0;
}
