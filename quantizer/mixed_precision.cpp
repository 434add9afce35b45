// The calibrated pipeline behind --method greedy | layerwise (and uniform with --calib):
//   1. calibration: the engine's forward pass over the calibration windows (calibration.h);
//   2. sensitivity of every 2-D weight (sensitivity.h), and from it the channel permutations
//      (reorder.h), which fold into the weights;
//   3. [gptq with reordering] a second calibration pass that collects XᵀX blocks in the
//      permuted channel order (the blocks of a permuted matrix are not blocks of the original);
//   4. per-tile predicted loss at every bitwidth, exact bytes, and the allocation (allocate.h);
//   5. the output, tensor by tensor, written atomically.
// Only one tensor is held in f32 at a time; the input stays mmapped.
#include <fmt/format.h>
#include <xxhash.h>

#include <malloc.h>

#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "engine/model.h"
#include "formats/dtype_convert.h"
#include "kernels/cpu/cpu_backend.h"
#include "quantizer/calibration.h"
#include "quantizer/backprop.h"
#include "quantizer/grad_stats.h"
#include "quantizer/quantize_internal.h"
#include "quantizer/reorder.h"
#include "quantizer/stats_cache.h"
#include "quantizer/tiled_tensor.h"

namespace sbits::quantizer::detail {
namespace {

using Clock = std::chrono::steady_clock;

// The backward pass and the calibration passes free ~100 MB of activations and scratch, but
// glibc keeps freed arena memory mapped; giving it back between phases keeps the peak RSS
// near one phase's need instead of the sum of all of them.
// The input's pages read by the previous phase leave the resident set too: the calibration and
// gradient passes map the same file a second time, and RSS counts each mapping's pages.
void release_free_memory(const SbitsFile& in) {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  in.release_pages();
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw QuantizerError("--calib " + path + ": cannot open the calibration text");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (ss.str().empty()) throw QuantizerError("--calib " + path + ": the calibration text is empty");
  return ss.str();
}

struct Context {
  const SbitsFile& in;
  const QuantizeOptions& opt;
  const ProgressFn& progress;
  Clock::time_point t0 = Clock::now();
  std::vector<std::vector<int32_t>> windows;        // the calibration token windows
  CalibrationStats stats;                           // diag statistics, original channel order
  CalibrationStats blocks;                          // XᵀX blocks in the output's channel order
  std::map<std::string, TensorSensitivity> sens;    // original channel order
  ModelPermutation perm;
  double seconds() const { return std::chrono::duration<double>(Clock::now() - t0).count(); }
  bool gptq() const { return opt.tile_method == TileMethod::gptq; }
};

// The calibration windows, tokenized once per run (every pass uses the same ones).
void ensure_windows(Context& cx, const Tokenizer& tok, const std::string& text) {
  if (cx.windows.empty()) cx.windows = calibration_windows(tok, text, cx.opt.calib_tokens, cx.opt.calib_seq);
}

CalibrationStats run_calibration(Context& cx, const std::string& text, int block,
                                 const ModelPermutation* perm, const char* phase) {
  release_free_memory(cx.in);
  auto backend = kernels::make_cpu_backend(cx.opt.threads);
  auto model = Model::load(cx.in.path(), *backend);
  ensure_windows(cx, model->tokenizer(), text);
  CalibrationOptions co;
  co.tokens = cx.opt.calib_tokens;
  co.seq_len = cx.opt.calib_seq;
  co.block = block;
  co.threads = cx.opt.threads;
  if (perm && !perm->empty()) {
    co.permutation = [perm](size_t layer, LinearInput which) -> const std::vector<int32_t>* {
      if (which == LinearInput::attn_output) return nullptr;
      if (which == LinearInput::ffn_down) return layer < perm->ffn.size() ? &perm->ffn[layer] : nullptr;
      return &perm->hidden;
    };
  }
  return calibrate(*model, cx.windows, co, [&](size_t d, size_t n) {
    if (cx.progress) cx.progress(phase, d, n, cx.seconds());
  });
}

void load_windows(Context& cx, const std::string& text) {
  auto backend = kernels::make_cpu_backend(1);
  auto model = Model::load(cx.in.path(), *backend);  // mmapped: only the tokenizer is used
  ensure_windows(cx, model->tokenizer(), text);
}

// Step 2: sensitivities in the original order, and the permutations they imply.
// With `cached`, cx.sens already holds the sensitivities (--cache) and only the permutations
// are planned.
void plan_sensitivity(Context& cx, bool cached) {
  const ModelConfig c = ModelConfig::from_metadata(cx.in.metadata());
  ReorderPlanner planner(int(c.dim), int(c.ffn_dim), int(c.n_layers));
  std::map<std::string, TensorSensitivity> grad;
  if (!cached && cx.opt.sensitivity == "grad") {
    GradStatsOptions go;
    go.threads = cx.opt.threads;
    go.targets = cx.opt.fisher == "sampled" ? GradTargets::sampled : GradTargets::data;
    go.progress = [&](size_t d, size_t n) {
      if (cx.progress) cx.progress("gradients", d, n, cx.seconds());
    };
    // --grad-tokens: every k-th calibration window, so the backward pass still sees the whole text.
    std::vector<std::vector<int32_t>> windows;
    const size_t per = cx.windows.empty() ? 1 : std::max<size_t>(cx.windows[0].size() - 1, 1);
    const size_t want = cx.opt.grad_tokens ? std::max<size_t>((cx.opt.grad_tokens + per - 1) / per, 1) : SIZE_MAX;
    for (size_t i = 0; i < cx.windows.size() && windows.size() < want; ++i)
      if (want >= cx.windows.size() || (i * want) % cx.windows.size() < want) windows.push_back(cx.windows[i]);
    GradStatsResult r = collect_grad_sensitivity(cx.in.path(), windows, go);
    release_free_memory(cx.in);
    cx.stats.loss = r.mean_loss;
    cx.stats.tokens = r.tokens;
    for (GradSensitivity& g : r.tensors) grad[g.name] = TensorSensitivity{std::move(g.r), std::move(g.c)};
  }
  size_t done = 0;
  for (const TensorInfo& t : cx.in.tensors()) {
    ++done;
    if (!quantizable(t)) continue;
    const std::vector<float> w = to_f32(cx.in, t);
    const auto rows = int64_t(t.shape[0]), cols = int64_t(t.shape[1]);
    if (!cached) {
      auto it = grad.find(t.name);
      cx.sens[t.name] = it != grad.end() ? std::move(it->second)
                                         : proxy_sensitivity(t.name, w.data(), rows, cols, cx.stats);
    }
    const auto sit = cx.sens.find(t.name);
    if (sit == cx.sens.end()) throw QuantizerError("--cache: the cached statistics have no tensor " + t.name);
    planner.add(t.name, w.data(), rows, cols, sit->second);
    if (cx.progress) cx.progress("sensitivity", done, cx.in.tensors().size(), cx.seconds());
  }
  const bool reorder = cx.opt.reorder && cx.opt.method != "uniform";
  if (reorder) cx.perm = planner.plan();
}

// The tensor in the output's channel order, with its sensitivity permuted to match.
struct PermutedTensor {
  std::vector<float> w;
  TensorSensitivity s;
  int64_t rows = 0, cols = 0;
};
PermutedTensor permuted(const Context& cx, const TensorInfo& t) {
  PermutedTensor p;
  p.rows = int64_t(t.shape[0]);
  p.cols = int64_t(t.shape[1]);
  const TensorPermutation tp = permutation_of(cx.perm, t.name);
  // Row by row, so that only the permuted f32 copy exists (the embedding is 65 MB in f32).
  const auto src = cx.in.bytes(t);
  const size_t elem = src.size() / size_t(p.rows * p.cols);
  std::vector<float> row(size_t(p.cols));
  p.w.resize(size_t(p.rows * p.cols));
  const TensorPermutation cols_only{nullptr, tp.cols};
  for (int64_t r = 0; r < p.rows; ++r) {
    const int64_t from = tp.rows ? int64_t((*tp.rows)[size_t(r)]) : r;
    convert_floats(Layout(t.layout), Layout::f32, src.data() + size_t(from * p.cols) * elem,
                   reinterpret_cast<uint8_t*>(row.data()), uint64_t(p.cols), nullptr);
    permute_matrix(row.data(), 1, p.cols, cols_only, p.w.data() + r * p.cols);
  }
  const TensorSensitivity& s = cx.sens.at(t.name);
  p.s.r = permute_vector(s.r, tp.rows);
  p.s.c = permute_vector(s.c, tp.cols);
  return p;
}

struct Units {
  std::vector<AllocUnit> units;
  std::vector<std::pair<size_t, size_t>> span;  // per tensor index: first unit, unit count
  uint64_t fixed_bytes = 0;                      // tensors not allocated + tile tables
  uint64_t params = 0;
};

// Step 4a: one unit per tile (greedy) or per tensor (layerwise) with exact bytes per choice.
Units build_units(Context& cx) {
  Units u;
  const TiledParams& p = cx.opt.params;
  const bool per_tensor = cx.opt.method != "greedy";
  u.span.resize(cx.in.tensors().size(), {0, 0});
  for (size_t ti = 0; ti < cx.in.tensors().size(); ++ti) {
    const TensorInfo& t = cx.in.tensors()[ti];
    u.params += counts_as_params(t.layout) ? t.element_count() : 0;
    if (!quantizable(t)) {
      u.fixed_bytes += t.size;
      continue;
    }
    const PermutedTensor pt = permuted(cx, t);
    const TiledGrid g = tiled_grid(p, uint64_t(pt.rows), uint64_t(pt.cols));
    u.fixed_bytes += tiled_table_bytes(g);
    const auto table = tile_error_table(pt.w.data(), pt.rows, pt.cols, pt.s, p, cx.opt.tile_method, cx.opt.threads);
    const int pinned = bits_for(t.name, 0, cx.opt.keep);
    AllocUnit whole;
    u.span[ti] = {u.units.size(), per_tensor ? 1 : g.count()};
    for (uint64_t i = 0; i < g.count(); ++i) {
      AllocUnit a;
      for (int k = 0; k < kTileChoices; ++k)
        a.bytes[size_t(k)] = tiled_tile_bytes(p, g, i / g.tiles_c, i % g.tiles_c, uint32_t(kTileBits[size_t(k)]));
      a.err = table[i];
      if (pinned) a.lo = a.hi = uint8_t(tile_choice_of_bits(pinned));
      if (!per_tensor) {
        u.units.push_back(a);
        continue;
      }
      for (int k = 0; k < kTileChoices; ++k) {
        whole.bytes[size_t(k)] += a.bytes[size_t(k)];
        whole.err[size_t(k)] += a.err[size_t(k)];
      }
      whole.lo = a.lo;
      whole.hi = a.hi;
    }
    if (per_tensor) u.units.push_back(whole);
    cx.in.release_pages();  // this tensor's source pages are not read again in this phase
    if (cx.progress) cx.progress("error tables", ti + 1, cx.in.tensors().size(), cx.seconds());
  }
  return u;
}

// Step 4b: the per-tensor plan from an allocation.
FilePlan plan_from(const Context& cx, const Units& u, const Allocation& a) {
  FilePlan plan;
  const TiledParams& p = cx.opt.params;
  for (size_t ti = 0; ti < cx.in.tensors().size(); ++ti) {
    const TensorInfo& t = cx.in.tensors()[ti];
    TensorPlan tp;
    tp.name = t.name;
    tp.params = counts_as_params(t.layout) ? t.element_count() : 0;
    tp.quantize = quantizable(t);
    if (tp.quantize) {
      const TiledGrid g = tiled_grid(p, t.shape[0], t.shape[1]);
      const auto [first, count] = u.span[ti];
      tp.tile_bits.resize(g.count());
      for (uint64_t i = 0; i < g.count(); ++i) {
        const size_t unit = first + (count == 1 ? 0 : i);
        tp.tile_bits[i] = uint8_t(kTileBits[a.choice[unit]]);
      }
      for (size_t k = first; k < first + count; ++k) tp.predicted += u.units[k].err[a.choice[k]];
      tp.bits = tp.tile_bits[0];
      tp.bytes = tiled_tensor_bytes(p, t.shape[0], t.shape[1], tp.tile_bits);
    } else {
      tp.bytes = t.size;
    }
    plan.tensor_bytes += tp.bytes;
    plan.params += tp.params;
    plan.tensors.push_back(std::move(tp));
  }
  plan.bpw = plan.params ? double(plan.tensor_bytes) * 8.0 / double(plan.params) : 0.0;
  return plan;
}

// Step 5: the output file.
void write_output(Context& cx, const std::string& out_path, const FilePlan& plan, const MixedStats& ms) {
  SbitsWriter w(out_path, {cx.in.path()});
  write_metadata(w.metadata(), cx.in, cx.opt, plan, &ms);
  const std::vector<uint8_t> aux = encode_tiled_aux(cx.opt.params);
  for (size_t ti = 0; ti < cx.in.tensors().size(); ++ti) {
    const TensorInfo& t = cx.in.tensors()[ti];
    const TensorPlan& tp = plan.tensors[ti];
    const TensorPermutation perm = permutation_of(cx.perm, t.name);
    if (tp.quantize) {
      const PermutedTensor pt = permuted(cx, t);
      const InputMoments* m = cx.blocks.layers.empty() ? nullptr : cx.blocks.input_of(t.name);
      TensorQuantOptions tq;
      tq.params = cx.opt.params;
      tq.threads = cx.opt.threads;
      tq.method = cx.opt.tile_method == TileMethod::gptq && !m ? TileMethod::mse : cx.opt.tile_method;
      InputStats st;
      st.hdiag = t.name == tensor_name_embedding() ? nullptr : pt.s.c.data();
      st.h_blocks = m && !m->blocks.empty() ? m->blocks.data() : nullptr;
      std::vector<uint8_t> bytes;
      try {
        bytes = quantize_tensor(pt.w.data(), pt.rows, pt.cols, tp.tile_bits, tq, st);
      } catch (const std::exception& e) {
        throw QuantizerError(cx.in.path() + ": tensor " + t.name + ": " + e.what());
      }
      if (bytes.size() != tp.bytes)
        throw QuantizerError("internal: tensor " + t.name + " planned " + std::to_string(tp.bytes) + " bytes, wrote " +
                             std::to_string(bytes.size()));
      w.add_tensor(t.name, kTiledLayoutId, kTiledLayoutVersion, t.shape, bytes, aux);
    } else if (perm.cols && t.shape.size() == 1 && t.shape[0] == perm.cols->size()) {
      const auto src = cx.in.bytes(t);  // a norm weight: its elements follow the hidden permutation
      std::vector<uint8_t> bytes(src.size());
      permute_elements(src.data(), src.size() / t.shape[0], *perm.cols, bytes.data());
      w.add_tensor(t.name, t.layout, t.layout_version, t.shape, bytes, t.aux);
    } else {
      w.add_tensor(t.name, t.layout, t.layout_version, t.shape, cx.in.bytes(t), t.aux);
    }
    cx.in.release_pages();
    if (cx.progress) cx.progress("write", ti + 1, cx.in.tensors().size(), cx.seconds());
  }
  w.commit();
}

}  // namespace

QuantizeReport quantize_mixed(const SbitsFile& in, const std::string& out_path, const QuantizeOptions& opt,
                              const ProgressFn& progress) {
  Context cx{in, opt, progress};
  QuantizeReport report;
  MixedStats& ms = report.mixed;
  const std::string text = read_text(opt.calib_path);
  ms.calib_hash = XXH64(text.data(), text.size(), 0);
  const bool reorder = opt.reorder && opt.method != "uniform";
  const bool grad = opt.sensitivity == "grad";
  // The proxy needs a forward pass for diag(XᵀX); the gradient pass measures its own E[x^2], so
  // with grad the only forward pass left is gptq's XᵀX blocks (in the permuted channel order).
  // Without reordering the proxy's pass can collect those blocks at once.
  const int block = cx.gptq() && !reorder && !grad ? int(opt.params.tile_cols) : 0;
  const std::string sens_kind = grad ? "grad/" + opt.fisher + "/" + std::to_string(opt.grad_tokens) : opt.sensitivity;
  const uint64_t key = stats_cache_key(in, ms.calib_hash, opt.calib_tokens, opt.calib_seq, sens_kind);
  const std::string cache_path = opt.cache_dir.empty() ? "" : stats_cache_path(opt.cache_dir, key);
  std::optional<CachedStats> cached = cache_path.empty() || block ? std::nullopt : load_stats_cache(cache_path, key);
  if (cached) {
    cx.stats = std::move(cached->stats);
    cx.sens = std::move(cached->sens);
    if (progress) progress("statistics from --cache", 1, 1, cx.seconds());
  } else if (grad) {
    load_windows(cx, text);
  } else {
    cx.stats = run_calibration(cx, text, block, nullptr, "calibration");
  }
  release_free_memory(cx.in);
  plan_sensitivity(cx, cached.has_value());
  ms.calib_loss = cx.stats.loss;
  ms.calib_tokens = cx.stats.tokens;
  if (!cached && !cache_path.empty()) {
    CachedStats c{cx.stats, cx.sens};
    for (auto& layer : c.stats.layers)
      for (InputMoments& m : layer) m.blocks.clear();
    save_stats_cache(cache_path, key, c);
  }
  ms.reordered = !cx.perm.empty();
  if (cx.gptq()) {
    cx.blocks = block ? std::move(cx.stats)
                      : run_calibration(cx, text, int(opt.params.tile_cols), &cx.perm, "calibration (XtX blocks)");
  }
  release_free_memory(cx.in);
  ms.seconds_calibration = cx.seconds();
  Units u = build_units(cx);
  ms.seconds_tables = cx.seconds() - ms.seconds_calibration;
  Allocation chosen;
  if (opt.method == "uniform") {
    const FilePlan up = plan_uniform(in, budget_bpw(in, opt), opt.keep, opt.params);
    chosen.choice.resize(u.units.size());
    for (size_t ti = 0; ti < in.tensors().size(); ++ti)
      for (size_t k = u.span[ti].first; k < u.span[ti].first + u.span[ti].second; ++k)
        chosen.choice[k] = uint8_t(tile_choice_of_bits(up.tensors[ti].bits));
  } else {
    const uint64_t total = tensor_byte_budget(in, opt, u.params);
    uint64_t floor_bytes = u.fixed_bytes;
    for (const AllocUnit& a : u.units) floor_bytes += a.bytes[a.lo];
    if (total < floor_bytes) {
      throw QuantizerError(fmt::format("the budget ({:.4f} bits per weight) is below this model's smallest file in the "
                                       "tiled layout, {:.4f} bits per weight (2-bit codes, the 0.25 bpw of scales, "
                                       "the --keep pins and the tensors kept as they are); raise the budget",
                                       double(total) * 8.0 / double(u.params),
                                       double(floor_bytes) * 8.0 / double(u.params)));
    }
    ms.budget_bytes = total - u.fixed_bytes;
    const Allocation g = allocate(u.units, ms.budget_bytes, AllocMethod::greedy);
    const Allocation l = allocate(u.units, ms.budget_bytes, AllocMethod::lagrange);
    ms.predicted_greedy = g.predicted;
    ms.bytes_greedy = g.bytes;
    ms.predicted_lagrange = l.predicted;
    ms.bytes_lagrange = l.bytes;
    chosen = opt.alloc == AllocMethod::greedy ? g : l;
  }
  report.plan = plan_from(cx, u, chosen);
  for (const TensorPlan& tp : report.plan.tensors) ms.predicted += tp.predicted;
  const double t_write = cx.seconds();
  write_output(cx, out_path, report.plan, ms);
  ms.seconds_write = cx.seconds() - t_write;
  return report;
}

}  // namespace sbits::quantizer::detail
