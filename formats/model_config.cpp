// ModelConfig <-> metadata, and the canonical tensor set (SBITS.md "Model metadata",
// "Tensor names").
#include "formats/model_config.h"

#include <cmath>

#include "formats/sbits_layout.h"

namespace sbits {
namespace {

constexpr const char* kSupportedArchitectures = "llama";
// Generous upper bounds: they keep every derived size far from 64-bit overflow while staying
// well above any real Llama-family model.
constexpr uint64_t kMaxDim = 1ull << 24;
constexpr uint64_t kMaxLayers = 1ull << 16;

const char* rope_name(RopeConvention r) { return r == RopeConvention::neox ? "neox" : "interleaved"; }

std::string fmt_num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

}  // namespace

ModelConfig ModelConfig::from_metadata(const Metadata& meta) {
  ModelConfig c;
  c.architecture = meta.get_string("general.architecture");
  if (c.architecture != "llama") {
    throw FormatError("metadata general.architecture = \"" + c.architecture + "\"; supported: " + kSupportedArchitectures);
  }
  c.dim = meta.get_u64("llama.dim");
  c.ffn_dim = meta.get_u64("llama.ffn_dim");
  c.n_layers = meta.get_u64("llama.n_layers");
  c.n_heads = meta.get_u64("llama.n_heads");
  c.n_kv_heads = meta.get_u64("llama.n_kv_heads");
  c.head_dim = meta.get_u64("llama.head_dim");
  c.vocab_size = meta.get_u64("llama.vocab_size");
  c.context_length = meta.get_u64("llama.context_length");
  c.rope_theta = meta.get_f64("llama.rope.theta");
  const std::string& rope = meta.get_string("llama.rope.convention");
  if (rope == "neox") {
    c.rope = RopeConvention::neox;
  } else if (rope == "interleaved") {
    c.rope = RopeConvention::interleaved;
  } else {
    throw FormatError("metadata llama.rope.convention: expected \"neox\" or \"interleaved\", found \"" + rope + "\"");
  }
  c.norm_eps = meta.get_f64("llama.norm_eps");
  c.tied_embeddings = meta.get_bool("llama.tied_embeddings");
  c.bos_id = meta.get_i64("tokenizer.bos_id");
  c.eos_id = meta.get_i64("tokenizer.eos_id");
  c.validate();
  return c;
}

void ModelConfig::to_metadata(Metadata& meta) const {
  meta.set("general.architecture", architecture);
  meta.set("llama.dim", dim);
  meta.set("llama.ffn_dim", ffn_dim);
  meta.set("llama.n_layers", n_layers);
  meta.set("llama.n_heads", n_heads);
  meta.set("llama.n_kv_heads", n_kv_heads);
  meta.set("llama.head_dim", head_dim);
  meta.set("llama.vocab_size", vocab_size);
  meta.set("llama.context_length", context_length);
  meta.set("llama.rope.theta", rope_theta);
  meta.set("llama.rope.convention", std::string(rope_name(rope)));
  meta.set("llama.norm_eps", norm_eps);
  meta.set("llama.tied_embeddings", tied_embeddings);
  meta.set("tokenizer.bos_id", bos_id);
  meta.set("tokenizer.eos_id", eos_id);
}

void ModelConfig::validate() const {
  auto fail = [](const std::string& what) { throw FormatError("model config: " + what); };
  if (architecture != "llama") fail("architecture \"" + architecture + "\"; supported: " + kSupportedArchitectures);
  const std::pair<const char*, uint64_t> sizes[] = {
      {"llama.dim", dim}, {"llama.ffn_dim", ffn_dim}, {"llama.n_heads", n_heads}, {"llama.n_kv_heads", n_kv_heads},
      {"llama.head_dim", head_dim}, {"llama.vocab_size", vocab_size}, {"llama.context_length", context_length}};
  for (const auto& [key, v] : sizes) {
    if (v == 0 || v > kMaxDim) fail(std::string(key) + ": expected 1.." + std::to_string(kMaxDim) + ", found " + std::to_string(v));
  }
  if (n_layers == 0 || n_layers > kMaxLayers) {
    fail("llama.n_layers: expected 1.." + std::to_string(kMaxLayers) + ", found " + std::to_string(n_layers));
  }
  if (n_kv_heads > n_heads || n_heads % n_kv_heads != 0) {
    fail("llama.n_kv_heads=" + std::to_string(n_kv_heads) + ": expected a divisor of llama.n_heads=" + std::to_string(n_heads));
  }
  if (head_dim % 2 != 0) fail("llama.head_dim=" + std::to_string(head_dim) + ": expected even (RoPE rotates pairs)");
  if (!(std::isfinite(rope_theta) && rope_theta > 0)) fail("llama.rope.theta: expected > 0, found " + fmt_num(rope_theta));
  if (!(std::isfinite(norm_eps) && norm_eps > 0)) fail("llama.norm_eps: expected > 0, found " + fmt_num(norm_eps));
  for (auto [key, id] : {std::pair{"tokenizer.bos_id", bos_id}, std::pair{"tokenizer.eos_id", eos_id}}) {
    if (id < -1 || (id >= 0 && static_cast<uint64_t>(id) >= vocab_size)) {
      fail(std::string(key) + ": expected -1 or an id below llama.vocab_size=" + std::to_string(vocab_size) +
           ", found " + std::to_string(id));
    }
  }
}

std::string tensor_name_embedding() { return "tok_embd"; }
std::string tensor_name_output_norm() { return "output_norm"; }
std::string tensor_name_output() { return "output"; }
std::string tensor_name_layer(uint64_t layer, const char* suffix) {
  return "blk." + std::to_string(layer) + "." + suffix;
}

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
  auto s = [](const char* key, uint64_t v) { return std::string(key) + "=" + std::to_string(v); };
  const std::string dim = s("llama.dim", c.dim), vocab = s("llama.vocab_size", c.vocab_size),
                    ffn = s("llama.ffn_dim", c.ffn_dim);
  const std::string q = s("llama.n_heads", c.n_heads) + " x " + s("llama.head_dim", c.head_dim);
  const std::string kv = s("llama.n_kv_heads", c.n_kv_heads) + " x " + s("llama.head_dim", c.head_dim);
  const uint64_t qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
  std::vector<ExpectedTensor> t;
  t.push_back({tensor_name_embedding(), {c.vocab_size, c.dim}, vocab + ", " + dim});
  for (uint64_t l = 0; l < c.n_layers; ++l) {
    auto n = [l](const char* suffix) { return tensor_name_layer(l, suffix); };
    t.push_back({n("attn_norm"), {c.dim}, dim});
    t.push_back({n("attn_q"), {qd, c.dim}, q + ", " + dim});
    t.push_back({n("attn_k"), {kvd, c.dim}, kv + ", " + dim});
    t.push_back({n("attn_v"), {kvd, c.dim}, kv + ", " + dim});
    t.push_back({n("attn_output"), {c.dim, qd}, dim + ", " + q});
    t.push_back({n("ffn_norm"), {c.dim}, dim});
    t.push_back({n("ffn_gate"), {c.ffn_dim, c.dim}, ffn + ", " + dim});
    t.push_back({n("ffn_up"), {c.ffn_dim, c.dim}, ffn + ", " + dim});
    t.push_back({n("ffn_down"), {c.dim, c.ffn_dim}, dim + ", " + ffn});
  }
  t.push_back({tensor_name_output_norm(), {c.dim}, dim});
  if (!c.tied_embeddings) t.push_back({tensor_name_output(), {c.vocab_size, c.dim}, vocab + ", " + dim});
  return t;
}

void validate_model_tensors(const SbitsFile& file, const ModelConfig& config) {
  const std::string p = file.path() + ": ";
  config.validate();
  auto expected = expected_tensors(config);
  for (const ExpectedTensor& e : expected) {
    const TensorInfo* t = file.find(e.name);
    if (!t) {
      throw FormatError(p + e.name + ": missing; expected shape " + detail::shape_string(e.shape) + " from " +
                        e.derivation + (e.name == tensor_name_output() ? " (llama.tied_embeddings is false)" : ""));
    }
    if (t->shape != e.shape) {
      throw FormatError(p + e.name + ": expected shape " + detail::shape_string(e.shape) + " from " + e.derivation +
                        ", found " + detail::shape_string(t->shape));
    }
    if (!layout_name(t->layout)) {
      throw FormatError(p + e.name + ": unknown layout id " + std::to_string(t->layout) + " (this reader knows " +
                        detail::known_layout_names() + ")");
    }
  }
  if (file.tensors().size() != expected.size()) {
    for (const TensorInfo& t : file.tensors()) {
      bool known = false;
      for (const ExpectedTensor& e : expected) known = known || e.name == t.name;
      if (!known) {
        throw FormatError(p + t.name + ": unexpected tensor for this config" +
                          (t.name == tensor_name_output() ? " (llama.tied_embeddings is true)" : ""));
      }
    }
  }
}

}  // namespace sbits
