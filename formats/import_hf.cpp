// Hugging Face LlamaForCausalLM / MistralForCausalLM checkpoints (config.json + safetensors,
// single or sharded) to .sbits. See SBITS.md "Importers".
#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <set>

#include "formats/import_common.h"
#include "formats/safetensors.h"
#include "formats/sbits_layout.h"

namespace sbits::detail {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json read_json(const std::string& path) {
  std::string text = read_small_file(path, 64u << 20);
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw FormatError(path + ": not a JSON object");
  return j;
}

// config[key] as a positive integer; `fallback` when absent or null.
uint64_t cfg_u64(const json& c, const char* key, const std::string& p, std::optional<uint64_t> fallback = {}) {
  if (!c.contains(key) || c[key].is_null()) {
    if (fallback) return *fallback;
    throw FormatError(p + ": " + key + ": missing");
  }
  if (!c[key].is_number_unsigned() || c[key].get<uint64_t>() == 0) {
    throw FormatError(p + ": " + key + ": expected a positive integer, found " + c[key].dump());
  }
  return c[key].get<uint64_t>();
}

double cfg_f64(const json& c, const char* key, const std::string& p, double fallback) {
  if (!c.contains(key) || c[key].is_null()) return fallback;
  if (!c[key].is_number()) throw FormatError(p + ": " + key + ": expected a number, found " + c[key].dump());
  return c[key].get<double>();
}

// bos/eos: an integer, null (none), or a list (first entry: ModelConfig holds one id).
std::optional<int64_t> token_id(const json& c, const char* key, const std::string& p) {
  if (!c.contains(key)) return std::nullopt;
  const json& v = c[key].is_array() && !c[key].empty() ? c[key][0] : c[key];
  if (v.is_null()) return -1;
  if (!v.is_number_integer()) throw FormatError(p + ": " + key + ": expected an integer, found " + c[key].dump());
  return v.get<int64_t>();
}

void check_architecture(const json& c, const std::string& p) {
  static const char* supported = "LlamaForCausalLM, MistralForCausalLM";
  if (c.contains("architectures") && c["architectures"].is_array()) {
    for (const json& a : c["architectures"]) {
      if (a == "LlamaForCausalLM" || a == "MistralForCausalLM") return;
    }
    throw FormatError(p + ": architectures = " + c["architectures"].dump() + "; supported: " + supported);
  }
  std::string mt = c.value("model_type", std::string());
  if (mt == "llama" || mt == "mistral") return;
  throw FormatError(p + ": no architectures list and model_type \"" + mt + "\"; supported: " + supported);
}

// Refuses settings whose tensors or math the engine does not have, rather than importing a
// model that would silently compute something else.
void check_unsupported(const json& c, const json& rope, const std::string& p) {
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (c.contains(key) && c[key] == true) throw FormatError(p + ": " + key + " = true; bias tensors are not supported");
  }
  if (c.contains("hidden_act") && c["hidden_act"] != "silu") {
    throw FormatError(p + ": hidden_act = " + c["hidden_act"].dump() + "; supported: \"silu\"");
  }
  if (rope.is_object()) {
    json type = rope.contains("rope_type") ? rope["rope_type"] : rope.value("type", json("default"));
    if (type != "default") throw FormatError(p + ": rope type " + type.dump() + "; supported: \"default\" (no RoPE scaling)");
    if (rope.contains("partial_rotary_factor") && rope["partial_rotary_factor"] != 1.0) {
      throw FormatError(p + ": partial_rotary_factor = " + rope["partial_rotary_factor"].dump() + "; supported: 1");
    }
  }
}

ModelConfig parse_config(const std::string& dir) {
  const std::string p = dir + "/config.json";
  if (!fs::exists(p)) throw FormatError(dir + ": no config.json: expected a Hugging Face model directory");
  json c = read_json(p);
  check_architecture(c, p);
  json rope = c.contains("rope_parameters") ? c["rope_parameters"] : c.value("rope_scaling", json());
  check_unsupported(c, rope, p);
  ModelConfig m;
  m.dim = cfg_u64(c, "hidden_size", p);
  m.ffn_dim = cfg_u64(c, "intermediate_size", p);
  m.n_layers = cfg_u64(c, "num_hidden_layers", p);
  m.n_heads = cfg_u64(c, "num_attention_heads", p);
  m.n_kv_heads = cfg_u64(c, "num_key_value_heads", p, m.n_heads);
  if (m.dim % m.n_heads != 0 && !(c.contains("head_dim") && !c["head_dim"].is_null())) {
    throw FormatError(p + ": hidden_size " + std::to_string(m.dim) + " is not a multiple of num_attention_heads " +
                      std::to_string(m.n_heads) + " and head_dim is not given");
  }
  m.head_dim = cfg_u64(c, "head_dim", p, m.dim / m.n_heads);
  m.vocab_size = cfg_u64(c, "vocab_size", p);
  m.context_length = cfg_u64(c, "max_position_embeddings", p);
  // Within the window sliding and full attention agree; beyond it the engine would differ.
  if (c.contains("sliding_window") && c["sliding_window"].is_number_unsigned()) {
    m.context_length = std::min(m.context_length, std::max<uint64_t>(1, c["sliding_window"].get<uint64_t>()));
  }
  m.rope_theta = cfg_f64(c, "rope_theta", p, 10000.0);
  if (rope.is_object()) m.rope_theta = cfg_f64(rope, "rope_theta", p + ": rope_parameters", m.rope_theta);
  m.rope = RopeConvention::neox;  // HF checkpoints are rotate-half
  m.norm_eps = cfg_f64(c, "rms_norm_eps", p, 1e-6);
  m.tied_embeddings = c.value("tie_word_embeddings", false);
  json gen = fs::exists(dir + "/generation_config.json") ? read_json(dir + "/generation_config.json") : json::object();
  auto bos = token_id(c, "bos_token_id", p), eos = token_id(c, "eos_token_id", p);
  m.bos_id = bos ? *bos : token_id(gen, "bos_token_id", dir + "/generation_config.json").value_or(1);
  m.eos_id = eos ? *eos : token_id(gen, "eos_token_id", dir + "/generation_config.json").value_or(2);
  try {
    m.validate();
  } catch (const FormatError& e) {
    throw FormatError(p + ": " + e.what());
  }
  return m;
}

// .sbits name -> Hugging Face name.
std::string hf_name(const std::string& name) {
  if (name == "tok_embd") return "model.embed_tokens.weight";
  if (name == "output_norm") return "model.norm.weight";
  if (name == "output") return "lm_head.weight";
  static const std::pair<const char*, const char*> layer[] = {
      {"attn_norm", "input_layernorm"},  {"attn_q", "self_attn.q_proj"},   {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},    {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
      {"ffn_gate", "mlp.gate_proj"},     {"ffn_up", "mlp.up_proj"},          {"ffn_down", "mlp.down_proj"}};
  size_t dot = name.find('.', 4);  // "blk.N.suffix"
  std::string n = name.substr(4, dot - 4), suffix = name.substr(dot + 1);
  for (const auto& [s, hf] : layer) {
    if (suffix == s) return "model.layers." + n + "." + hf + ".weight";
  }
  return name;
}

// The checkpoint's tensors: every shard mapped once, and where each HF name lives.
struct Checkpoint {
  std::vector<std::unique_ptr<SafetensorsFile>> shards;
  std::map<std::string, const SafetensorsFile*> where;
  std::vector<std::string> files;  // for provenance, in reading order
};

Checkpoint open_checkpoint(const std::string& dir) {
  Checkpoint ck;
  const std::string index = dir + "/model.safetensors.index.json", single = dir + "/model.safetensors";
  if (fs::exists(index)) {
    json j = read_json(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) throw FormatError(index + ": weight_map: expected an object");
    std::map<std::string, const SafetensorsFile*> by_file;
    ck.files.push_back(index);
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) throw FormatError(index + ": weight_map." + name + ": expected a file name");
      std::string f = file.get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..") {
        throw FormatError(index + ": weight_map." + name + ": \"" + f + "\" is not a file name in this directory");
      }
      if (!by_file.count(f)) {
        ck.shards.push_back(std::make_unique<SafetensorsFile>(dir + "/" + f));
        by_file[f] = ck.shards.back().get();
        ck.files.push_back(dir + "/" + f);
      }
      if (!by_file[f]->find(name)) throw FormatError(dir + "/" + f + ": tensor " + name + ": listed in the index but missing");
      ck.where[name] = by_file[f];
    }
  } else if (fs::exists(single)) {
    ck.shards.push_back(std::make_unique<SafetensorsFile>(single));
    ck.files.push_back(single);
    for (const auto& [name, t] : ck.shards.back()->tensors()) ck.where[name] = ck.shards.back().get();
  } else {
    std::string hint = fs::exists(dir + "/pytorch_model.bin") ? " (PyTorch .bin checkpoints are not supported: save as safetensors)" : "";
    throw FormatError(dir + ": no model.safetensors or model.safetensors.index.json" + hint);
  }
  return ck;
}

// Finds and checks every tensor the config asks for; rejects tensors the engine would ignore.
std::vector<SourceTensor> collect_tensors(const std::string& dir, const Checkpoint& ck, ModelConfig& config) {
  if (!config.tied_embeddings && !ck.where.count("lm_head.weight")) config.tied_embeddings = true;
  std::vector<SourceTensor> out;
  std::set<std::string> used;
  for (const ExpectedTensor& e : expected_tensors(config)) {
    std::string hf = hf_name(e.name);
    auto it = ck.where.find(hf);
    if (it == ck.where.end()) throw FormatError(dir + ": tensor " + hf + " (" + e.name + "): missing");
    const SafetensorsTensor& t = *it->second->find(hf);
    SourceTensor s{e.name, it->second->path() + ": " + hf};
    if (!t.layout) throw FormatError(s.origin + ": dtype " + t.dtype + "; supported: BF16, F16, F32");
    if (t.shape != e.shape) {
      throw FormatError(s.origin + ": expected shape " + shape_string(e.shape) + " from config.json (" + e.derivation +
                        "), found " + shape_string(t.shape));
    }
    s.layout = *t.layout;
    s.shape = t.shape;
    s.bytes = t.bytes;
    s.owner = &it->second->map();
    out.push_back(std::move(s));
    used.insert(hf);
  }
  for (const auto& [hf, file] : ck.where) {
    bool ignorable = hf.ends_with("rotary_emb.inv_freq") || (hf == "lm_head.weight" && config.tied_embeddings);
    if (!used.count(hf) && !ignorable) {
      throw FormatError(file->path() + ": tensor " + hf + ": not part of a Llama model as this importer knows it");
    }
  }
  return out;
}

std::string default_chat_template(const std::string& dir) {
  const std::string p = dir + "/tokenizer_config.json";
  if (!fs::exists(p)) return "plain";
  json j = read_json(p);
  if (j.contains("chat_template") && j["chat_template"].is_string()) return j["chat_template"].get<std::string>();
  if (j.contains("chat_template") && j["chat_template"].is_array()) {
    for (const json& t : j["chat_template"]) {
      if (t.value("name", "") == "default" && t.contains("template") && t["template"].is_string()) return t["template"];
    }
  }
  return "plain";
}

}  // namespace

ImportResult import_huggingface(const std::string& dir, const std::string& dest, const ImportOptions& options) {
  ModelConfig config = parse_config(dir);
  Checkpoint ck = open_checkpoint(dir);
  std::vector<SourceTensor> tensors = collect_tensors(dir, ck, config);
  std::string tok_path = options.tokenizer_path.empty() ? dir + "/tokenizer.model" : options.tokenizer_path;
  if (!fs::exists(tok_path)) {
    throw FormatError(dir + ": no tokenizer.model" +
                      std::string(fs::exists(dir + "/tokenizer.json") ? " (tokenizer.json alone is not supported)" : "") +
                      "; pass --tokenizer FILE");
  }
  TokenizerData tok = load_tokenizer(tok_path, config.vocab_size);
  std::string chat = options.chat_template.empty() ? default_chat_template(dir) : resolve_chat_template(options.chat_template);
  std::vector<std::string> sources = {dir + "/config.json"};
  sources.insert(sources.end(), ck.files.begin(), ck.files.end());
  sources.push_back(tok_path);
  std::string name = options.name;
  if (name.empty()) {
    fs::path d = fs::path(dir).lexically_normal();
    name = (d.has_filename() ? d.filename() : d.parent_path().filename()).string();
  }

  SbitsWriter w(dest, sources);
  write_model_metadata(w.metadata(), config, name, tok, chat, sources, options);
  ImportResult r{SourceKind::huggingface, config};
  r.tokenizer_kind = tok.kind;
  for (const SourceTensor& t : tensors) {
    r.tensor_bytes += write_tensor(w, t, options.dtype);
    uint64_t n = 1;
    for (uint64_t d : t.shape) n *= d;
    r.parameter_count += n;
    ++r.tensor_count;
  }
  w.commit();
  return r;
}

}  // namespace sbits::detail
