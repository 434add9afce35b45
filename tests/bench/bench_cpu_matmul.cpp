// Times the CPU backend's matmul on the shapes of tech-llama-58m (d_model 512, ffn 1536,
// vocabulary 32000) for bf16, f16 and f32 weights:
//   n = 1  (decode): GB/s of weight bytes, "hot" (the same weight again and again, so small
//          shapes come from cache) and "cold" (a ring of copies > 64 MiB, so every call streams
//          from DRAM, as a real forward pass over all layers does);
//   n = 64 (prefill): GFLOP/s.
// For comparison it measures memcpy and a read-only sweep of DRAM in the same run. Prints a
// table and writes JSON (CPU, date, threads, ISA, every number) to
// bench/results/cpu_matmul_<hostname>.json, or to --out.
//
// usage: bench_cpu_matmul [--threads N] [--out PATH] [--quick]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/cpu_backend.h"

using namespace sbits::kernels;

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int threads = 0;
  std::string out;
  bool quick = false;
};

struct Timing {
  double median = 0, best = 0;  // seconds per call
};

// Seconds per call of f over `batches` batches of calls lasting >= batch_s each, after a
// warm-up. On a machine shared with other processes the best batch is the closest to the
// kernel's own speed (a short batch can fall between other processes' time slices); the
// median says what a user of the busy machine would see.
template <class F>
Timing time_per_call(F&& f, double batch_s, int batches) {
  f();
  f();
  std::vector<double> per_call;
  for (int b = 0; b < batches; ++b) {
    const auto t0 = Clock::now();
    int calls = 0;
    double el = 0;
    do {
      f();
      ++calls;
      el = std::chrono::duration<double>(Clock::now() - t0).count();
    } while (el < batch_s);
    per_call.push_back(el / calls);
  }
  std::sort(per_call.begin(), per_call.end());
  return Timing{per_call[per_call.size() / 2], per_call[0]};
}

// Runs f(thread, begin, end) over [0, n) split evenly across `threads` std::threads.
template <class F>
void split(int threads, size_t n, F&& f) {
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] { f(n * size_t(t) / size_t(threads), n * size_t(t + 1) / size_t(threads)); });
  for (auto& t : ts) t.join();
}

struct MemoryBandwidth {
  double memcpy_1t = 0, memcpy_nt = 0, read_nt = 0;  // GB/s of bytes copied / read, best batch
};

MemoryBandwidth measure_memory(int threads, double batch_s) {
  const size_t bytes = size_t(256) << 20;  // 32x a typical L3
  std::vector<uint64_t> a(bytes / 8, 1), b(bytes / 8, 2);
  MemoryBandwidth m;
  m.memcpy_1t = double(bytes) / time_per_call([&] { std::memcpy(b.data(), a.data(), bytes); }, batch_s, 5).best / 1e9;
  m.memcpy_nt = double(bytes) / time_per_call([&] {
    split(threads, a.size(), [&](size_t s, size_t e) { std::memcpy(&b[s], &a[s], (e - s) * 8); });
  }, batch_s, 5).best / 1e9;
  std::vector<uint64_t> sums(size_t(threads) * 8);
  m.read_nt = double(bytes) / time_per_call([&] {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        const size_t s = a.size() * size_t(t) / size_t(threads), e = a.size() * size_t(t + 1) / size_t(threads);
        uint64_t acc[4] = {0, 0, 0, 0};
        for (size_t i = s; i + 4 <= e; i += 4)
          for (int l = 0; l < 4; ++l) acc[l] += a[i + size_t(l)];
        sums[size_t(t) * 8] = acc[0] + acc[1] + acc[2] + acc[3];  // one line per thread
      });
    for (auto& t : ts) t.join();
  }, batch_s, 5).best / 1e9;
  return m;
}

size_t elem_bytes(WeightType t) { return t == WeightType::f32 ? 4 : 2; }

// Random weight bytes of the given type (values in [-1, 1], no NaN or inf).
std::vector<uint8_t> random_weight(WeightType t, int64_t rows, int64_t cols, std::mt19937_64& rng) {
  const size_t n = size_t(rows * cols);
  std::vector<uint8_t> w(n * elem_bytes(t));
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (size_t i = 0; i < n; ++i) {
    const float f = d(rng);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (t == WeightType::f32) {
      std::memcpy(&w[4 * i], &f, 4);
    } else {
      // bf16: the top half; f16: 0x3c00-centred codes with a random mantissa (|v| < 2).
      const uint16_t h = t == WeightType::bf16 ? uint16_t(u >> 16) : uint16_t((u & 0x83ffu) | 0x3800u);
      std::memcpy(&w[2 * i], &h, 2);
    }
  }
  return w;
}

struct Result {
  std::string shape;
  WeightType type;
  int64_t rows, cols;
  Timing hot, cold, prefill;  // seconds per call
  size_t weight_bytes = 0;
  double gbps(double s) const { return double(weight_bytes) / s / 1e9; }
  double gflops(double s) const { return 2.0 * 64 * double(rows) * double(cols) / s / 1e9; }
};

Result bench_shape(Backend& be, WeightType t, int64_t rows, int64_t cols, double batch_s) {
  std::mt19937_64 rng(uint64_t(rows * 31 + cols));
  Result r{std::to_string(rows) + "x" + std::to_string(cols), t, rows, cols};
  const size_t wbytes = size_t(rows * cols) * elem_bytes(t);
  // The ring for cold runs: enough copies to exceed 64 MiB, so none is still cached.
  const size_t copies = std::max<size_t>(1, ((size_t(64) << 20) + wbytes - 1) / wbytes);
  std::vector<std::vector<uint8_t>> host;
  std::vector<std::unique_ptr<Weight>> ws;
  host.push_back(random_weight(t, rows, cols, rng));
  for (size_t i = 0; i < copies; ++i) {
    if (i > 0) host.push_back(host[0]);
    ws.push_back(be.upload(HostWeight{t, rows, cols, host.back().data(), wbytes}));
  }
  const int n_prefill = 64;
  std::vector<float> xv(size_t(n_prefill * cols));
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (auto& v : xv) v = d(rng);
  auto x = be.alloc(xv.size());
  be.write(*x, xv.data(), xv.size());
  auto y = be.alloc(size_t(n_prefill * rows));
  r.weight_bytes = wbytes;
  r.hot = time_per_call([&] { be.matmul(*ws[0], *x, 1, *y, false); }, batch_s, 15);
  size_t next = 0;
  r.cold = time_per_call([&] {
    be.matmul(*ws[next], *x, 1, *y, false);
    next = (next + 1) % ws.size();
  }, batch_s, 15);
  r.prefill = time_per_call([&] { be.matmul(*ws[0], *x, n_prefill, *y, false); }, batch_s, 15);
  return r;
}

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The 1-minute load average: on a shared machine the numbers only mean something next to it.
std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string one;
  f >> one;
  return one.empty() ? "unknown" : one;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) o += c;
  }
  return o;
}

void write_json(const std::string& path, const std::string& cpu, int threads, const std::string& load_before,
                const MemoryBandwidth& m, const std::vector<Result>& rs) {
  std::ofstream f(path);
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return;
  }
  f << "{\n  \"benchmark\": \"cpu_matmul\",\n  \"host\": \"" << json_escape(hostname()) << "\",\n  \"date\": \""
    << utc_now() << "\",\n  \"cpu\": \"" << json_escape(cpu) << "\",\n  \"threads\": " << threads
    << ",\n  \"load_average_1min\": {\"before\": \"" << load_before << "\", \"after\": \"" << load_average() << "\"}"
    << ",\n  \"memory_gbps\": {\"memcpy_1_thread\": " << m.memcpy_1t << ", \"memcpy_all_threads\": " << m.memcpy_nt
    << ", \"read_all_threads\": " << m.read_nt << "},\n  \"prefill_rows\": 64,\n  \"results\": [\n";
  for (size_t i = 0; i < rs.size(); ++i) {
    const Result& r = rs[i];
    f << "    {\"shape\": \"" << r.shape << "\", \"rows\": " << r.rows << ", \"cols\": " << r.cols << ", \"type\": \""
      << weight_type_name(r.type) << "\", \"weight_bytes\": " << r.weight_bytes
      << ",\n     \"n1_hot_us\": {\"best\": " << r.hot.best * 1e6 << ", \"median\": " << r.hot.median * 1e6
      << "}, \"n1_hot_gbps_best\": " << r.gbps(r.hot.best) << ",\n     \"n1_cold_us\": {\"best\": "
      << r.cold.best * 1e6 << ", \"median\": " << r.cold.median * 1e6 << "}, \"n1_cold_gbps_best\": "
      << r.gbps(r.cold.best) << ",\n     \"n64_ms\": {\"best\": " << r.prefill.best * 1e3 << ", \"median\": "
      << r.prefill.median * 1e3 << "}, \"n64_gflops_best\": " << r.gflops(r.prefill.best) << "}"
      << (i + 1 < rs.size() ? ",\n" : "\n");
  }
  f << "  ]\n}\n";
  std::printf("wrote %s\n", path.c_str());
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      o.threads = std::atoi(argv[++i]);
    } else if (a == "--out" && i + 1 < argc) {
      o.out = argv[++i];
    } else if (a == "--quick") {
      o.quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--threads N] [--out PATH] [--quick]\n", argv[0]);
      std::exit(2);
    }
  }
  if (o.out.empty()) o.out = std::string(SBITS_SOURCE_DIR) + "/bench/results/cpu_matmul_" + hostname() + ".json";
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  auto be = make_cpu_backend(opt.threads);
  const std::string cpu = be->device_description();
  const int threads = opt.threads > 0 ? opt.threads : int(std::thread::hardware_concurrency());
  const double batch_s = opt.quick ? 0.005 : 0.02;
  const std::string load_before = load_average();
  std::printf("%s, load average %s\n", cpu.c_str(), load_before.c_str());
  const MemoryBandwidth m = measure_memory(threads, batch_s);
  std::printf("memory (best batch): memcpy %.1f GB/s (1 thread), %.1f GB/s (%d threads); read %.1f GB/s (%d threads)\n"
              "        (memcpy GB/s count bytes copied; DRAM traffic is 2-3x that)\n\n",
              m.memcpy_1t, m.memcpy_nt, threads, m.read_nt, threads);
  const int64_t shapes[][2] = {{512, 512}, {256, 512}, {1536, 512}, {512, 1536}, {32000, 512}};
  std::vector<Result> rs;
  std::printf("best of 15 batches (median in brackets)\n");
  std::printf("%-10s %-5s | %-22s | %-22s | %-22s\n", "shape", "type", "n=1 hot GB/s", "n=1 cold (DRAM) GB/s",
              "n=64 GFLOP/s");
  for (const auto& s : shapes) {
    for (WeightType t : {WeightType::bf16, WeightType::f16, WeightType::f32}) {
      const Result r = bench_shape(*be, t, s[0], s[1], batch_s);
      std::printf("%-10s %-5s | %8.2f (%6.2f) %6.0fus | %8.2f (%6.2f) %6.0fus | %8.1f (%6.1f) %6.2fms\n",
                  r.shape.c_str(), weight_type_name(t), r.gbps(r.hot.best), r.gbps(r.hot.median), r.hot.best * 1e6,
                  r.gbps(r.cold.best), r.gbps(r.cold.median), r.cold.best * 1e6, r.gflops(r.prefill.best),
                  r.gflops(r.prefill.median), r.prefill.best * 1e3);
      std::fflush(stdout);
      rs.push_back(r);
    }
  }
  std::printf("load average after: %s\n", load_average().c_str());
  write_json(opt.out, cpu, threads, load_before, m, rs);
  return 0;
}
