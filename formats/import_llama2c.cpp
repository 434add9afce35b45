// llama2.c legacy checkpoints (version 0: 7 int32 header + float32 tensors) to .sbits.
// See SBITS.md "Importers" and the tensor table under "Tensor names".
#include <cstring>
#include <filesystem>

#include "formats/bytes.h"
#include "formats/import_common.h"

namespace sbits::detail {
namespace {

namespace fs = std::filesystem;

struct Llama2cHeader {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};
static_assert(sizeof(Llama2cHeader) == 28);

ModelConfig config_from(const Llama2cHeader& h, const std::string& p) {
  const std::pair<const char*, int32_t> fields[] = {{"dim", h.dim},         {"hidden_dim", h.hidden_dim},
                                                    {"n_layers", h.n_layers}, {"n_heads", h.n_heads},
                                                    {"n_kv_heads", h.n_kv_heads}, {"seq_len", h.seq_len}};
  for (const auto& [name, v] : fields) {
    if (v <= 0) throw FormatError(p + ": header " + name + ": expected a positive int32, found " + std::to_string(v));
  }
  if (h.vocab_size == 0 || h.vocab_size == INT32_MIN) throw FormatError(p + ": header vocab_size: expected non-zero, found " + std::to_string(h.vocab_size));
  if (h.dim % h.n_heads != 0) {
    throw FormatError(p + ": header dim " + std::to_string(h.dim) + ": expected a multiple of n_heads " + std::to_string(h.n_heads));
  }
  ModelConfig c;
  c.dim = static_cast<uint64_t>(h.dim);
  c.ffn_dim = static_cast<uint64_t>(h.hidden_dim);
  c.n_layers = static_cast<uint64_t>(h.n_layers);
  c.n_heads = static_cast<uint64_t>(h.n_heads);
  c.n_kv_heads = static_cast<uint64_t>(h.n_kv_heads);
  c.head_dim = c.dim / c.n_heads;
  c.vocab_size = static_cast<uint64_t>(h.vocab_size < 0 ? -static_cast<int64_t>(h.vocab_size) : h.vocab_size);
  c.context_length = static_cast<uint64_t>(h.seq_len);
  c.rope_theta = 10000.0;
  c.rope = RopeConvention::interleaved;  // llama2.c rotates pairs (2i, 2i+1)
  c.norm_eps = 1e-5;
  c.tied_embeddings = h.vocab_size > 0;  // llama2.c's legacy signal: negative = own classifier
  c.bos_id = 1;
  c.eos_id = 2;
  try {
    c.validate();
  } catch (const FormatError& e) {
    throw FormatError(p + ": " + e.what());
  }
  return c;
}

// The float32 arrays of the file in order: {.sbits suffix or name, per-layer?, rows, cols}.
// freq_cis_* are llama2.c's precomputed RoPE tables: skipped (the engine computes its own).
struct Block {
  const char* name;
  bool per_layer;
  uint64_t rows, cols;  // cols == 0: a vector of `rows`
};

std::vector<Block> file_blocks(const ModelConfig& c) {
  const uint64_t kv = c.n_kv_heads * c.head_dim, q = c.n_heads * c.head_dim;
  std::vector<Block> b = {
      {"tok_embd", false, c.vocab_size, c.dim}, {"attn_norm", true, c.dim, 0}, {"attn_q", true, q, c.dim},
      {"attn_k", true, kv, c.dim},            {"attn_v", true, kv, c.dim},   {"attn_output", true, c.dim, q},
      {"ffn_norm", true, c.dim, 0},           {"ffn_gate", true, c.ffn_dim, c.dim},  // w1
      {"ffn_down", true, c.dim, c.ffn_dim},                                         // w2
      {"ffn_up", true, c.ffn_dim, c.dim},                                           // w3
      {"output_norm", false, c.dim, 0},       {"freq_cis_real", false, c.context_length, c.head_dim / 2},
      {"freq_cis_imag", false, c.context_length, c.head_dim / 2}};
  if (!c.tied_embeddings) b.push_back({"output", false, c.vocab_size, c.dim});
  return b;
}

}  // namespace

ImportResult import_llama2c(const std::string& path, const std::string& dest, const ImportOptions& options) {
  MappedFile file(path);
  if (file.size() < sizeof(Llama2cHeader)) {
    throw FormatError(path + ": file is " + std::to_string(file.size()) + " bytes, too small for a llama2.c header (28)");
  }
  uint32_t magic;
  std::memcpy(&magic, file.bytes().data(), 4);
  if (magic == 0x616b3432) {  // "ak42": llama2.c export versions 1 and 2
    throw FormatError(path + ": llama2.c export version 1/2 (magic ak42); only the legacy format (version 0) is supported");
  }
  Llama2cHeader h;
  std::memcpy(&h, file.bytes().data(), sizeof h);
  ModelConfig config = config_from(h, path);
  std::vector<Block> blocks = file_blocks(config);
  uint64_t expect = sizeof h;
  for (const Block& b : blocks) {
    uint64_t n = checked_mul(b.rows, b.cols ? b.cols : 1, path);
    if (b.per_layer) n = checked_mul(n, config.n_layers, path);
    expect = checked_add(expect, checked_mul(n, 4, path), path);
  }
  if (file.size() != expect) {
    throw FormatError(path + ": file is " + std::to_string(file.size()) + " bytes; the header (dim=" +
                      std::to_string(h.dim) + ", hidden_dim=" + std::to_string(h.hidden_dim) + ", n_layers=" +
                      std::to_string(h.n_layers) + ", n_heads=" + std::to_string(h.n_heads) + ", n_kv_heads=" +
                      std::to_string(h.n_kv_heads) + ", vocab_size=" + std::to_string(h.vocab_size) +
                      ", seq_len=" + std::to_string(h.seq_len) + ") implies " + std::to_string(expect));
  }
  // Slice the file into per-layer tensors, then emit them in the canonical order.
  std::map<std::string, SourceTensor> by_name;
  uint64_t off = sizeof h;
  for (const Block& b : blocks) {
    std::vector<uint64_t> shape = b.cols ? std::vector<uint64_t>{b.rows, b.cols} : std::vector<uint64_t>{b.rows};
    const uint64_t bytes = b.rows * (b.cols ? b.cols : 1) * 4;
    for (uint64_t l = 0; l < (b.per_layer ? config.n_layers : 1); ++l) {
      std::string name = b.per_layer ? tensor_name_layer(l, b.name) : b.name;
      by_name[name] = SourceTensor{name, path + ": " + name, Layout::f32, shape, file.bytes().subspan(off, bytes), &file};
      off += bytes;
    }
  }
  if (options.tokenizer_path.empty()) {
    throw FormatError(path + ": llama2.c checkpoints carry no tokenizer; pass --tokenizer (a .model or tokenizer.bin)");
  }
  TokenizerData tok = load_tokenizer(options.tokenizer_path, config.vocab_size);
  std::string chat = options.chat_template.empty() ? "plain" : resolve_chat_template(options.chat_template);
  std::vector<std::string> sources = {path, options.tokenizer_path};
  std::string name = options.name.empty() ? fs::path(path).stem().string() : options.name;

  SbitsWriter w(dest, sources);
  write_model_metadata(w.metadata(), config, name, tok, chat, sources, options);
  ImportResult r{SourceKind::llama2c, config};
  r.tokenizer_kind = tok.kind;
  for (const ExpectedTensor& e : expected_tensors(config)) {
    const SourceTensor& t = by_name.at(e.name);
    r.tensor_bytes += write_tensor(w, t, options.dtype);
    r.parameter_count += t.bytes.size() / 4;
    ++r.tensor_count;
  }
  w.commit();
  return r;
}

}  // namespace sbits::detail
