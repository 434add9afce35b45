// bench_vulkan_matvec: effective bandwidth of the Vulkan backend's tiled matvec (decode, n rows
// of x, default 1) against the device-to-device copy bandwidth measured in the same run.
//
// Shapes 4096x4096, 11008x4096, 4096x11008, 32000x4096; tiles of 64 x 128 with one scale
// group, all 2-, 3-, 4- or 8-bit, or (bits 0) the CUDA benchmark's mixed allocation of 2.5 bits per
// weight (80% 2-bit, 15% 3-bit, 5% 4-bit tiles + scales). Each configuration is uploaded in as many copies as make
// >= 256 MiB (several times any L2), and the matvecs rotate over them, so every byte comes
// from device memory. A round of matvecs is recorded into one command buffer and submitted
// (as a decode step is); time per matvec = round time / count, median of rounds, host wall
// clock, submission included.
//
// Bandwidth counts the bytes of the tiled tensor (codes, scales, tile table); the copy counts
// bytes read plus bytes written. Two copies are measured: a compute shader (uvec4 loads and
// stores: what the shader cores can stream, the baseline of '% copy') and vkCmdCopyBuffer
// (which a driver may give to a copy engine: 837 GB/s on an H200 against ~4.2 TB/s for the
// shader copy, so it would flatter the kernels). Prints a table and writes JSON to
// bench/results/vulkan_matvec_<device>.json (bench/results of the working directory when it has
// one, else of the source tree; or --out FILE).
//
// Options: --device N   Vulkan device (sbits-run --list-devices; default 0 = preferred)
//          --quick      a smoke run (llvmpipe): one shape (4096x4096), one copy, 2 matvecs a round, 1 round
//          --rounds N   timed rounds (default 7)
//          --n N        rows of x (1..8, default 1)
//          --bits LIST  bitwidths, e.g. 3,4, 0 = mixed 2.5 bpw (default 2,3,4,8,0)
//          --shapes L   e.g. 4096x4096,32000x4096 (default the four above)
//          --independent  each weight copy writes its own y, so consecutive matvecs need no
//                       barrier: the difference to the default is what a dependent dispatch costs
//          --out FILE   JSON path
// Environment (recorded in the JSON): SBITS_VULKAN_MATVEC_SPLIT (0: tiled.comp at n = 1 too),
// SBITS_VULKAN_MATVEC_GROUPS (the split matvec's target of groups of 32), SBITS_VULKAN_MATVEC_ROWS
// (rows per workgroup of tiled.comp: 8 16 32 64; default 8 on GPUs).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/quant/tiled.h"
#include "kernels/vulkan/vulkan_backend.h"

namespace {

using namespace sbits::kernels;
using Clock = std::chrono::steady_clock;

struct Options {
  int device = 0;
  bool quick = false;
  bool independent = false;  // each copy its own y: no barrier between the matvecs of a round
  int rounds = 7;
  int n = 1;
  std::vector<int> bits = {2, 3, 4, 8, 0};  // 0: mixed 2.5 bpw
  std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {32000, 4096}};
  std::string out;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t next; (next = s.find(sep, at)) != std::string::npos; at = next + 1) out.push_back(s.substr(at, next - at));
  out.push_back(s.substr(at));
  return out;
}

// A tiled tensor with every tile at `bits`: random codes, sane f16 scales (the values do not
// matter for bandwidth, only that nothing is NaN).
struct Tensor {
  std::vector<uint8_t> storage;
  std::vector<uint8_t> bits;
  std::vector<uint64_t> offsets;
  quant::TiledDesc desc;
  HostWeight host;
};

Tensor make_tensor(int64_t rows, int64_t cols, int bits, uint32_t seed) {
  Tensor t;
  quant::TiledDesc& d = t.desc;
  d.rows = rows;
  d.cols = cols;
  d.tile_rows = 64;
  d.tile_cols = 128;
  d.group = 128;
  d.tiles_r = (rows + 63) / 64;
  d.tiles_c = (cols + 127) / 128;
  const size_t n = size_t(d.tiles_r * d.tiles_c);
  t.bits.assign(n, uint8_t(bits));
  if (bits == 0) {
    std::mt19937 mix(seed + 1);  // as bench_cuda_matvec: 80% 2-bit, 15% 3-bit, 5% 4-bit
    for (auto& b : t.bits) {
      const unsigned r = mix() % 100;
      b = r < 80 ? 2 : r < 95 ? 3 : 4;
    }
  }
  t.offsets.resize(n);
  uint64_t off = quant::pad16(n);
  for (int64_t tr = 0; tr < d.tiles_r; ++tr)
    for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
      t.offsets[size_t(tr * d.tiles_c + tc)] = off;
      off += quant::tile_bytes(std::min<int64_t>(64, rows - tr * 64), std::min<int64_t>(128, cols - tc * 128), 128,
                               t.bits[size_t(tr * d.tiles_c + tc)]);
    }
  t.storage.assign(off + 16, 0);
  uint8_t* base = t.storage.data() + (16 - reinterpret_cast<uintptr_t>(t.storage.data()) % 16) % 16;
  std::memcpy(base, t.bits.data(), n);
  std::mt19937 rng(seed);
  for (uint64_t i = quant::pad16(n); i < off; i += 4) {
    const uint32_t r = rng();
    std::memcpy(base + i, &r, 4);
  }
  d.bits = t.bits.data();
  d.offsets = t.offsets.data();
  d.data = base;
  for (int64_t tr = 0; tr < d.tiles_r; ++tr)  // scales 0x2000 (~0.0078), mins 0xa000 (~-0.0078)
    for (int64_t tc = 0; tc < d.tiles_c; ++tc) {
      const quant::TileView v = quant::tile_view(d, tr, tc);
      if (v.bits == 16) continue;
      auto* s = const_cast<uint16_t*>(v.scales);
      for (int k = 0; k < v.rows * v.groups; ++k) s[2 * k] = 0x2000, s[2 * k + 1] = 0xa000;
    }
  t.host = HostWeight{WeightType::tiled, rows, cols, base, size_t(off), &t.desc};
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string file_safe(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("option " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--device") o.device = std::stoi(value());
    else if (a == "--quick") o.quick = true, o.rounds = 1;
    else if (a == "--independent") o.independent = true;
    else if (a == "--rounds") o.rounds = std::max(1, std::stoi(value()));
    else if (a == "--n") o.n = std::clamp(std::stoi(value()), 1, 8);
    else if (a == "--bits") {
      o.bits.clear();
      for (const std::string& b : split(value(), ',')) o.bits.push_back(std::stoi(b));
    } else if (a == "--shapes") {
      o.shapes.clear();
      for (const std::string& sh : split(value(), ',')) {
        const auto rc = split(sh, 'x');
        if (rc.size() != 2) throw std::runtime_error("shape '" + sh + "' is not ROWSxCOLS");
        o.shapes.emplace_back(std::stoll(rc[0]), std::stoll(rc[1]));
      }
    }
    else if (a == "--out") o.out = value();
    else throw std::runtime_error("unknown option " + a + " (see the comment at the top of the source)");
  }
  return o;
}

// One configuration: seconds per matvec (median of rounds) and the JSON record.
nlohmann::json run_case(Backend& be, const Options& o, int64_t rows, int64_t cols, int bits, double copy_gbs) {
  const Tensor t = make_tensor(rows, cols, bits, uint32_t(rows * 31 + bits));
  // >= 256 MiB of copies (at most 1024: tiny shapes measure the per-dispatch cost, not DRAM).
  const size_t copies =
      o.quick ? 1 : std::clamp<size_t>(((size_t(256) << 20) + t.host.bytes - 1) / t.host.bytes, 1, 1024);
  std::vector<std::unique_ptr<Weight>> ws;
  for (size_t c = 0; c < copies; ++c) ws.push_back(be.upload(t.host));
  auto x = be.alloc(size_t(cols) * size_t(o.n));
  std::vector<std::unique_ptr<Buffer>> ys;
  for (size_t c = 0; c < (o.independent ? copies : 1); ++c) ys.push_back(be.alloc(size_t(rows) * size_t(o.n)));
  std::vector<float> xv(size_t(cols) * size_t(o.n), 0.01f);
  be.write(*x, xv.data(), xv.size());
  const int per_round = o.quick ? 2 : int(std::max<size_t>(copies, 64));
  auto round = [&] {
    for (int i = 0; i < per_round; ++i) be.matmul(*ws[size_t(i) % copies], *x, o.n, *ys[size_t(i) % ys.size()], false);
    be.synchronize();
  };
  round();  // pipelines, first touch; later rounds replay its command buffer
  std::vector<double> times;
  for (int r = 0; r < o.rounds; ++r) {
    const auto t0 = Clock::now();
    round();
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / per_round);
  }
  const double s = median(times);
  const double gbs = double(t.host.bytes) / s / 1e9;
  const std::string shape = std::to_string(rows) + "x" + std::to_string(cols);
  const std::string label = bits ? std::to_string(bits) : std::string("2.5m");
  std::printf("%-12s %4s %10.2f %10.1f %10.1f %7.1f%%\n", shape.c_str(), label.c_str(),
              double(t.host.bytes) / (1 << 20), s * 1e6, gbs, 100.0 * gbs / copy_gbs);
  std::fflush(stdout);
  return {{"rows", rows},
          {"cols", cols},
          {"bits", bits},
          {"config", bits ? label + "-bit" : "mixed 2.5 bpw"},
          {"bytes", t.host.bytes},
          {"copies", copies},
          {"us", s * 1e6},
          {"gbs", gbs},
          {"pct_of_copy", 100.0 * gbs / copy_gbs}};
}

// Default: bench/results/ of the repository we are run from (the device machine has a copy of
// the tree at another path), else of the source tree this was built from.
std::string output_path(const Options& o, const VulkanDeviceInfo& dev) {
  if (!o.out.empty()) return o.out;
  const std::string dir = std::filesystem::is_directory("bench/results")
                              ? std::string("bench/results")
                              : std::string(SBITS_SOURCE_DIR) + "/bench/results";
  return dir + "/vulkan_matvec_" + file_safe(dev.name) + ".json";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const auto devs = vulkan_devices();
    if (devs.empty()) {
      std::fprintf(stderr, "bench_vulkan_matvec: no Vulkan device\n");
      return 1;
    }
    auto be = make_vulkan_backend(o.device);
    const VulkanDeviceInfo& dev = devs.at(size_t(o.device));
    std::printf("device: %s\n", be->device_description().c_str());
    const size_t copy_bytes = o.quick ? size_t(16) << 20 : size_t(256) << 20;
    const double copy_s = vulkan_compute_copy_seconds(*be, copy_bytes, o.quick ? 2 : 20);
    const double copy_gbs = 2.0 * double(copy_bytes) / copy_s / 1e9;
    const double xfer_s = vulkan_copy_seconds(*be, copy_bytes, o.quick ? 2 : 20);
    const double xfer_gbs = 2.0 * double(copy_bytes) / xfer_s / 1e9;
    std::printf("copy: %.1f GB/s compute shader, %.1f GB/s vkCmdCopyBuffer (read + write of %zu MiB)\n", copy_gbs,
                xfer_gbs, copy_bytes >> 20);
    std::printf("n = %d; %% copy is against the compute-shader copy\n\n", o.n);
    std::printf("%-12s %4s %10s %10s %10s %8s\n", "shape", "bits", "MiB", "us", "GB/s", "% copy");
    nlohmann::json results = nlohmann::json::array();
    std::vector<std::pair<int64_t, int64_t>> shapes = o.shapes;
    if (o.quick) shapes.resize(1);
    for (auto [rows, cols] : shapes)
      for (int bits : o.bits) results.push_back(run_case(*be, o, rows, cols, bits, copy_gbs));
    const VulkanStats st = vulkan_stats(*be);
    const auto env = [](const char* name) {
      const char* e = std::getenv(name);
      return std::string(e ? e : "default");
    };
    const std::time_t now = std::time(nullptr);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    const nlohmann::json j = {{"benchmark", "vulkan_matvec"},
                              {"device", dev.name},
                              {"device_type", dev.type},
                              {"driver", dev.driver},
                              {"description", be->device_description()},
                              {"date", when},
                              {"n", o.n},
                              {"quick", o.quick},
                              {"independent", o.independent},
                              {"tile", "64x128, group 128"},
                              {"matvec_split", env("SBITS_VULKAN_MATVEC_SPLIT")},
                              {"matvec_split_groups", env("SBITS_VULKAN_MATVEC_GROUPS")},
                              {"matvec_rows_per_workgroup", env("SBITS_VULKAN_MATVEC_ROWS")},
                              {"barriers", st.barriers},
                              {"subgroup_reductions", st.subgroup_reductions},
                              {"integer_dot", st.integer_dot},
                              {"replays", st.replays},
                              {"copy_gbs", copy_gbs},
                              {"copy_baseline", "compute shader, uvec4"},
                              {"copy_cmd_gbs", xfer_gbs},
                              {"results", results}};
    const std::string out = output_path(o, dev);
    const std::string tmp = out + ".tmp";  // atomic: a reader never sees half a file
    {
      std::ofstream f(tmp);
      f << j.dump(2) << "\n";
      if (!f.flush()) throw std::runtime_error("cannot write " + tmp);
    }
    std::filesystem::rename(tmp, out);
    std::printf("\nwrote %s\n", out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_vulkan_matvec: error: %s\n", e.what());
    return 1;
  }
}
