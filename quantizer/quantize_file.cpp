// sbits-quantize's library side: the exact byte plan for a budget and the tensor-by-tensor
// rewrite of a float model into tiled tensors.
#include "quantizer/quantize_file.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <unistd.h>

#include "formats/dtype_convert.h"
#include "formats/import.h"
#include "quantizer/quantize_internal.h"
#include "quantizer/tiled_tensor.h"

namespace sbits::quantizer {
namespace detail {

bool counts_as_params(uint32_t layout) {  // sbits-inspect's rule
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

void write_metadata(Metadata& m, const SbitsFile& in, const QuantizeOptions& opt, const FilePlan& plan,
                    const MixedStats* mixed) {
  for (const auto& [key, value] : in.metadata().entries()) m.set(key, value);
  std::string keep;
  for (const KeepRule& k : opt.keep) keep += (keep.empty() ? "" : " ") + k.pattern + "=" + std::to_string(k.bits);
  m.set("quantizer.tool", std::string(kToolName));
  m.set("quantizer.method", opt.method);
  m.set("quantizer.tile_quantizer", std::string(tile_method_name(opt.tile_method)));
  m.set("quantizer.bpw_target", opt.bpw);
  m.set("quantizer.size_target", opt.size_bytes);
  m.set("quantizer.bpw", plan.bpw);
  if (plan.bits) m.set("quantizer.uniform_bits", uint64_t(plan.bits));
  m.set("quantizer.keep", keep);
  m.set("quantizer.tile_rows", uint64_t(opt.params.tile_rows));
  m.set("quantizer.tile_cols", uint64_t(opt.params.tile_cols));
  m.set("quantizer.group", uint64_t(opt.params.group));
  m.set("quantizer.source", std::filesystem::path(in.path()).filename().string() + "\t" +
                                std::to_string(in.file_size()) + " bytes");
  if (!mixed) {
    m.set("quantizer.calibration", std::string("none (weight-only)"));
    return;
  }
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(mixed->calib_hash));
  m.set("quantizer.calibration", std::filesystem::path(opt.calib_path).filename().string() + "\txxh64 " + hash +
                                     "\t" + std::to_string(mixed->calib_tokens) + " tokens");
  m.set("quantizer.calibration_loss", mixed->calib_loss);
  m.set("quantizer.sensitivity", opt.sensitivity == "grad" ? "grad (" + opt.fisher + " Fisher, " +
                                     (opt.grad_tokens ? std::to_string(opt.grad_tokens) : std::string("all")) +
                                     " tokens)" : opt.sensitivity);
  m.set("quantizer.reorder", std::string(mixed->reordered ? "hidden+ffn, folded into the weights" : "none"));
  m.set("quantizer.allocator", std::string(opt.alloc == AllocMethod::greedy ? "greedy" : "lagrange"));
  m.set("quantizer.predicted_loss_increase", mixed->predicted);
}

uint64_t tensor_byte_budget(const SbitsFile& in, const QuantizeOptions& opt, uint64_t params) {
  if (!opt.size_bytes) return uint64_t(std::floor(opt.bpw * double(params) / 8.0));
  // Everything but tensor data: the input's own non-tensor bytes (header, metadata with the
  // tokenizer, directory, padding), one alignment pad per tensor and room for quantizer.* keys.
  uint64_t input_tensor_bytes = 0;
  for (const TensorInfo& t : in.tensors()) input_tensor_bytes += t.size;
  const uint64_t overhead = in.file_size() - input_tensor_bytes + 256 * in.tensors().size() + 8192;
  if (opt.size_bytes <= overhead)
    throw QuantizerError("--size " + std::to_string(opt.size_bytes) + ": the file's metadata and directory alone need "
                         "about " + std::to_string(overhead) + " bytes");
  return opt.size_bytes - overhead;
}

}  // namespace detail

namespace {
using namespace detail;
constexpr int kUniformCandidates[] = {16, 8, 6, 5, 4, 3, 2};
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

namespace {

// Weight-only uniform: no calibration, no statistics.
QuantizeReport quantize_weight_only(const SbitsFile& in, const std::string& out_path, const QuantizeOptions& opt,
                                    const ProgressFn& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  QuantizeReport report;
  report.plan = plan_uniform(in, budget_bpw(in, opt), opt.keep, opt.params);
  SbitsWriter w(out_path, {in.path()});
  write_metadata(w.metadata(), in, opt, report.plan, nullptr);
  TensorQuantOptions tq;
  tq.params = opt.params;
  tq.method = opt.tile_method;
  tq.threads = opt.threads;
  const std::vector<uint8_t> aux = encode_tiled_aux(opt.params);
  for (size_t i = 0; i < in.tensors().size(); ++i) {
    const TensorInfo& t = in.tensors()[i];
    const TensorPlan& tp = report.plan.tensors[i];
    if (tp.quantize) {
      const std::vector<float> f = to_f32(in, t);
      std::vector<uint8_t> bytes;
      try {
        bytes = quantize_tensor_uniform(f.data(), int64_t(t.shape[0]), int64_t(t.shape[1]), tp.bits, tq);
      } catch (const std::exception& e) {
        throw QuantizerError(in.path() + ": tensor " + t.name + ": " + e.what());
      }
      if (bytes.size() != tp.bytes) {  // the plan's accounting and the writer must agree exactly
        throw QuantizerError("internal: tensor " + t.name + " planned " + std::to_string(tp.bytes) + " bytes, wrote " +
                             std::to_string(bytes.size()));
      }
      w.add_tensor(t.name, kTiledLayoutId, kTiledLayoutVersion, t.shape, bytes, aux);
    } else {
      w.add_tensor(t.name, t.layout, t.layout_version, t.shape, in.bytes(t), t.aux);
    }
    if (progress) progress("write", i + 1, in.tensors().size(), seconds());
  }
  w.commit();
  report.seconds = seconds();
  return report;
}

// A Hugging Face directory is imported to a temporary .sbits beside the output, which is
// removed however quantization ends.
class ImportedInput {
 public:
  ImportedInput(const std::string& in_path, const std::string& out_path) : path_(in_path) {
    if (!std::filesystem::is_directory(in_path)) return;
    temp_ = out_path + ".import-" + std::to_string(::getpid()) + ".tmp";
    path_ = temp_;
    import_model(in_path, temp_);
  }
  ~ImportedInput() {
    std::error_code ec;
    if (!temp_.empty()) std::filesystem::remove(temp_, ec);
  }
  ImportedInput(const ImportedInput&) = delete;
  ImportedInput& operator=(const ImportedInput&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_, temp_;
};

}  // namespace

double budget_bpw(const SbitsFile& in, const QuantizeOptions& opt) {
  if (!opt.size_bytes) return opt.bpw;
  uint64_t params = 0;
  for (const TensorInfo& t : in.tensors()) params += counts_as_params(t.layout) ? t.element_count() : 0;
  return double(tensor_byte_budget(in, opt, params)) * 8.0 / double(std::max<uint64_t>(params, 1));
}

QuantizeReport quantize_file(const std::string& in_path, const std::string& out_path, const QuantizeOptions& opt,
                             const ProgressFn& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.method != "uniform" && opt.method != "layerwise" && opt.method != "greedy")
    throw QuantizerError("--method " + opt.method + ": expected uniform, layerwise or greedy");
  const bool calibrated = !opt.calib_path.empty();
  if (!calibrated && opt.method != "uniform")
    throw QuantizerError("--method " + opt.method + " allocates by measured sensitivity and needs --calib FILE "
                         "(calibration text; never the evaluation text)");
  if (!calibrated && opt.tile_method == TileMethod::gptq)
    throw QuantizerError("--quantizer gptq needs the inputs' X^T X from calibration: give --calib FILE, or use rtn "
                         "or mse");
  if (opt.sensitivity != "proxy" && opt.sensitivity != "grad")
    throw QuantizerError("--sensitivity " + opt.sensitivity + ": expected proxy or grad");
  if (opt.fisher != "empirical" && opt.fisher != "sampled")
    throw QuantizerError("--fisher " + opt.fisher + ": expected empirical or sampled");
  check_tiled_params(opt.params, "tile shape");
  const ImportedInput input(in_path, out_path);
  auto in = SbitsFile::open(input.path());
  QuantizeReport report = calibrated ? quantize_mixed(*in, out_path, opt, progress)
                                     : quantize_weight_only(*in, out_path, opt, progress);
  report.file_bytes = std::filesystem::file_size(out_path);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace sbits::quantizer
