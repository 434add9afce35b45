#include "formats/tools/inspect_report.h"

#include <fmt/format.h>

#include <cinttypes>

namespace sbits::tools {
namespace {

using json = nlohmann::json;

// u8 and i32 are raw containers (indices, codebooks): they cost bytes but are not weights.
bool is_weight_layout(uint32_t id) {
  return id != static_cast<uint32_t>(Layout::u8) && id != static_cast<uint32_t>(Layout::i32);
}

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// A metadata value for the text listing: byte blobs by size only, long strings cut, control
// characters escaped so that every entry stays on one line.
std::string value_text(const MetaValue& v) {
  return std::visit([](const auto& x) -> std::string {
    using T = std::decay_t<decltype(x)>;
    if constexpr (std::is_same_v<T, bool>) {
      return x ? "true" : "false";
    } else if constexpr (std::is_same_v<T, double>) {
      return fmt::format("{}", x);
    } else if constexpr (std::is_same_v<T, std::string>) {
      std::string s;
      for (char c : x.substr(0, 120)) s += c == '\n' ? "\\n" : c == '\t' ? "\\t" : std::string(1, c);
      return "\"" + s + "\"" + (x.size() > 120 ? fmt::format(" ... ({} bytes)", x.size()) : "");
    } else if constexpr (std::is_same_v<T, std::vector<uint8_t>>) {
      return fmt::format("<{} bytes>", x.size());
    } else {
      return std::to_string(x);
    }
  }, v);
}

const char* type_text(const MetaValue& v) {
  static const char* names[] = {"u64", "i64", "f64", "bool", "string", "bytes"};
  return names[v.index()];
}

}  // namespace

InspectSummary summarize(const SbitsFile& f, bool verified) {
  InspectSummary s;
  for (const TensorInfo& t : f.tensors()) {
    s.tensor_bytes += t.size;
    if (is_weight_layout(t.layout)) s.params += t.element_count();
  }
  s.bpw = s.params ? static_cast<double>(s.tensor_bytes) * 8.0 / static_cast<double>(s.params) : 0.0;
  s.tensors_verified = verified;
  if (f.metadata().has("general.architecture")) {
    ModelConfig c;
    try {
      c = ModelConfig::from_metadata(f.metadata());
    } catch (const FormatError& e) {
      throw FormatError(f.path() + ": " + e.what());  // the config has no path of its own
    }
    validate_model_tensors(f, c);
    s.model = c;
  }
  return s;
}

json inspect_json(const SbitsFile& f, const InspectSummary& s) {
  json j;
  j["file"] = f.path();
  j["file_bytes"] = f.file_size();
  j["version"] = fmt::format("{}.{}", f.version_major(), f.version_minor());
  j["alignment"] = f.alignment();
  j["checksum"] = "ok";
  j["tensors_verified"] = s.tensors_verified;
  j["params"] = s.params;
  j["tensor_bytes"] = s.tensor_bytes;
  j["bpw"] = s.bpw;
  json meta = json::object();
  for (const auto& [key, v] : f.metadata().entries()) {
    if (auto* b = std::get_if<std::vector<uint8_t>>(&v)) {
      meta[key] = {{"type", "bytes"}, {"size", b->size()}};
    } else {
      std::visit([&](const auto& x) { meta[key] = x; }, v);
    }
  }
  j["metadata"] = meta;
  json tensors = json::array();
  for (const TensorInfo& t : f.tensors()) {
    tensors.push_back({{"name", t.name}, {"layout", layout_name(t.layout)}, {"layout_version", t.layout_version},
                       {"shape", t.shape}, {"bytes", t.size}, {"offset", t.offset},
                       {"xxh64", fmt::format("{:016x}", t.xxh64)}});
  }
  j["tensors"] = tensors;
  return j;
}

std::string inspect_text(const SbitsFile& f, const InspectSummary& s) {
  std::string o;
  o += fmt::format("file       {}\n", f.path());
  o += fmt::format("format     {}.{}, alignment {}, {} bytes\n", f.version_major(), f.version_minor(), f.alignment(),
                   f.file_size());
  o += fmt::format("checksum   header ok; tensors {}\n", s.tensors_verified ? "verified ok" : "not verified (use --verify)");
  o += fmt::format("params     {} in {} tensor bytes: {:.3f} bits per weight\n", s.params, s.tensor_bytes, s.bpw);
  if (s.model) {
    const ModelConfig& c = *s.model;
    o += fmt::format("model      {}: dim {}, ffn {}, {} layers, {} heads ({} kv) x {}, vocab {}, context {}, rope {} "
                     "theta {}, {}\n",
                     c.architecture, c.dim, c.ffn_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size,
                     c.context_length, c.rope == RopeConvention::neox ? "neox" : "interleaved", c.rope_theta,
                     c.tied_embeddings ? "tied embeddings" : "untied embeddings");
  }
  o += fmt::format("\nmetadata ({} keys)\n", f.metadata().entries().size());
  for (const auto& [key, v] : f.metadata().entries()) o += fmt::format("  {:<28} {:<6} {}\n", key, type_text(v), value_text(v));
  o += fmt::format("\ntensors ({})\n  {:<22} {:<6} {:<14} {:>12} {:>12}\n", f.tensors().size(), "name", "layout", "shape",
                   "bytes", "offset");
  for (const TensorInfo& t : f.tensors()) {
    o += fmt::format("  {:<22} {:<6} {:<14} {:>12} {:>12}\n", t.name, layout_name(t.layout), shape_text(t.shape), t.size,
                     t.offset);
  }
  return o;
}

}  // namespace sbits::tools
