// sbits-quantize's library side: the exact byte plan for a budget and the tensor-by-tensor
// rewrite of a float model into tiled tensors.
#include "quantizer/quantize_file.h"

#include <chrono>
#include <filesystem>

#include "formats/dtype_convert.h"
#include "quantizer/tiled_tensor.h"

namespace sbits::quantizer {
namespace {

constexpr int kUniformCandidates[] = {16, 8, 6, 5, 4, 3, 2};
constexpr const char* kToolName = "sbits-quantize 0.1.0";

bool counts_as_params(uint32_t layout) {  // u8/i32 are containers, not weights (sbits-inspect's rule)
  return layout != uint32_t(Layout::u8) && layout != uint32_t(Layout::i32);
}

bool quantizable(const TensorInfo& t) {
  return t.shape.size() == 2 && is_float_layout(Layout(t.layout));
}

int bits_for(const std::string& name, int uniform, const std::vector<KeepRule>& keep) {
  for (const KeepRule& k : keep)
    if (glob_match(k.pattern, name)) return k.bits;  // the first matching rule wins
  return uniform;
}

std::vector<float> to_f32(const SbitsFile& f, const TensorInfo& t) {
  std::vector<float> w(t.element_count());
  convert_floats(Layout(t.layout), Layout::f32, f.bytes(t).data(), reinterpret_cast<uint8_t*>(w.data()), w.size(),
                 nullptr);
  return w;
}

void write_metadata(Metadata& m, const SbitsFile& in, const QuantizeOptions& opt, const FilePlan& plan) {
  for (const auto& [key, value] : in.metadata().entries()) m.set(key, value);
  std::string keep;
  for (const KeepRule& k : opt.keep) keep += (keep.empty() ? "" : " ") + k.pattern + "=" + std::to_string(k.bits);
  m.set("quantizer.tool", std::string(kToolName));
  m.set("quantizer.method", opt.method);
  m.set("quantizer.tile_quantizer", std::string(tile_method_name(opt.tile_method)));
  m.set("quantizer.calibration", std::string("none (weight-only)"));
  m.set("quantizer.bpw_target", opt.bpw);
  m.set("quantizer.bpw", plan.bpw);
  m.set("quantizer.uniform_bits", uint64_t(plan.bits));
  m.set("quantizer.keep", keep);
  m.set("quantizer.tile_rows", uint64_t(opt.params.tile_rows));
  m.set("quantizer.tile_cols", uint64_t(opt.params.tile_cols));
  m.set("quantizer.group", uint64_t(opt.params.group));
  m.set("quantizer.source", std::filesystem::path(in.path()).filename().string() + "\t" +
                                std::to_string(in.file_size()) + " bytes");
}

}  // namespace

bool glob_match(const std::string& pattern, const std::string& name) {
  size_t p = 0, n = 0, star = std::string::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
    } else if (star != std::string::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

KeepRule parse_keep_rule(const std::string& text) {
  const size_t eq = text.rfind('=');
  const std::string bits = eq == std::string::npos ? "" : text.substr(eq + 1);
  KeepRule k;
  k.pattern = eq == std::string::npos ? "" : text.substr(0, eq);
  k.bits = bits == "2" ? 2 : bits == "3" ? 3 : bits == "4" ? 4 : bits == "5" ? 5 : bits == "6" ? 6 : bits == "8" ? 8
           : bits == "16" ? 16 : 0;
  if (k.pattern.empty() || k.bits == 0) {
    throw QuantizerError("--keep " + text + ": expected NAME=BITS with BITS one of 2, 3, 4, 5, 6, 8, 16 (f16 tiles); "
                         "NAME may use '*', e.g. --keep 'blk.*.ffn_down=6'");
  }
  return k;
}

FilePlan plan_uniform_bits(const SbitsFile& in, int bits, const std::vector<KeepRule>& keep, const TiledParams& p) {
  FilePlan plan;
  plan.bits = bits;
  for (const TensorInfo& t : in.tensors()) {
    if (t.layout == kTiledLayoutId) {
      throw QuantizerError(in.path() + ": tensor " + t.name + " is already tiled; quantize from a float model");
    }
    TensorPlan tp;
    tp.name = t.name;
    tp.params = counts_as_params(t.layout) ? t.element_count() : 0;
    tp.quantize = quantizable(t);
    tp.bits = tp.quantize ? bits_for(t.name, bits, keep) : 0;
    tp.bytes = tp.quantize ? tiled_tensor_bytes(p, t.shape[0], t.shape[1], uint32_t(tp.bits)) : t.size;
    plan.tensor_bytes += tp.bytes;
    plan.params += tp.params;
    plan.tensors.push_back(tp);
  }
  plan.bpw = plan.params ? double(plan.tensor_bytes) * 8.0 / double(plan.params) : 0.0;
  return plan;
}

FilePlan plan_uniform(const SbitsFile& in, double bpw_budget, const std::vector<KeepRule>& keep,
                      const TiledParams& p) {
  FilePlan smallest;
  for (int bits : kUniformCandidates) {
    FilePlan plan = plan_uniform_bits(in, bits, keep, p);
    if (plan.bpw <= bpw_budget) return plan;
    smallest = std::move(plan);
  }
  throw QuantizerError("--bpw " + std::to_string(bpw_budget) + ": even 2 bits everywhere gives " +
                       std::to_string(smallest.bpw) + " bits per weight for " + in.path() +
                       " (with the --keep rules and the tile metadata); raise the budget");
}

QuantizeReport quantize_file(const std::string& in_path, const std::string& out_path, const QuantizeOptions& opt,
                             const ProgressFn& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  if (opt.method != "uniform") {
    throw QuantizerError("--method " + opt.method + ": this version has only 'uniform' (greedy and layerwise "
                         "allocation need calibration, which comes next)");
  }
  if (opt.tile_method == TileMethod::gptq) {
    throw QuantizerError("--quantizer gptq needs calibration statistics, which this version does not collect yet; "
                         "use rtn or mse");
  }
  check_tiled_params(opt.params, "tile shape");
  auto in = SbitsFile::open(in_path);
  QuantizeReport report;
  report.plan = plan_uniform(*in, opt.bpw, opt.keep, opt.params);
  SbitsWriter w(out_path, {in_path});
  write_metadata(w.metadata(), *in, opt, report.plan);
  TensorQuantOptions tq;
  tq.params = opt.params;
  tq.method = opt.tile_method;
  tq.threads = opt.threads;
  const std::vector<uint8_t> aux = encode_tiled_aux(opt.params);
  for (size_t i = 0; i < in->tensors().size(); ++i) {
    const TensorInfo& t = in->tensors()[i];
    const TensorPlan& tp = report.plan.tensors[i];
    if (tp.quantize) {
      const std::vector<float> f = to_f32(*in, t);
      std::vector<uint8_t> bytes;
      try {
        bytes = quantize_tensor_uniform(f.data(), int64_t(t.shape[0]), int64_t(t.shape[1]), tp.bits, tq);
      } catch (const std::exception& e) {
        throw QuantizerError(in_path + ": tensor " + t.name + ": " + e.what());
      }
      if (bytes.size() != tp.bytes) {  // the plan's accounting and the writer must agree exactly
        throw QuantizerError("internal: tensor " + t.name + " planned " + std::to_string(tp.bytes) + " bytes, wrote " +
                             std::to_string(bytes.size()));
      }
      w.add_tensor(t.name, kTiledLayoutId, kTiledLayoutVersion, t.shape, bytes, aux);
    } else {
      w.add_tensor(t.name, t.layout, t.layout_version, t.shape, in->bytes(t), t.aux);
    }
    if (progress) progress(i, in->tensors().size(), tp, seconds());
  }
  w.commit();
  report.file_bytes = std::filesystem::file_size(out_path);
  report.seconds = seconds();
  return report;
}

}  // namespace sbits::quantizer
