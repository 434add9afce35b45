// Hugging Face import: tech-llama-58m (3 bf16 shards) checked against its shards read
// independently, and small synthetic checkpoints for the other config variants.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "formats/dtype_convert.h"
#include "formats/import.h"
#include "formats/model_config.h"
#include "tests/formats/hf_fixture.h"
#include "tests/formats/test_util.h"
#include "tests/test_data.h"

using namespace sbits;
using json = nlohmann::json;

namespace {

// A shard's tensor table parsed here with plain reads: name -> (absolute offset, shape).
struct ShardTensor {
  uint64_t offset;
  std::vector<uint64_t> shape;
  std::string dtype;
};
std::map<std::string, ShardTensor> shard_table(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint64_t n;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  json h = json::parse(text);
  std::map<std::string, ShardTensor> out;
  for (auto& [name, e] : h.items()) {
    if (name == "__metadata__") continue;
    out[name] = {8 + n + e["data_offsets"][0].get<uint64_t>(), e["shape"].get<std::vector<uint64_t>>(), e["dtype"]};
  }
  return out;
}

uint16_t u16_at(std::ifstream& in, uint64_t offset) {
  uint16_t v;
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(reinterpret_cast<char*>(&v), 2);
  REQUIRE(in.good());
  return v;
}

std::string hf_to_sbits(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "tok_embd";
  if (hf == "model.norm.weight") return "output_norm";
  if (hf == "lm_head.weight") return "output";
  static const std::map<std::string, std::string> m = {
      {"input_layernorm", "attn_norm"}, {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"}, {"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"},
      {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"}, {"mlp.down_proj", "ffn_down"}};
  std::string rest = hf.substr(std::string("model.layers.").size());
  std::string layer = rest.substr(0, rest.find('.'));
  std::string mid = rest.substr(layer.size() + 1, rest.size() - layer.size() - 1 - std::string(".weight").size());
  return "blk." + layer + "." + m.at(mid);
}

}  // namespace

TEST_CASE("HF import: tech-llama-58m, every tensor sampled against the bf16 shards") {
  const std::string dir = test::data_path("models/tech-llama-58m");
  const std::string out = test::temp_dir() + "/tech.sbits";
  ImportResult r = import_model(dir, out, {});
  CHECK(r.kind == SourceKind::huggingface);
  CHECK(r.parameter_count == 57942528);
  auto f = SbitsFile::open(out, {true});
  ModelConfig c = ModelConfig::from_metadata(f->metadata());
  validate_model_tensors(*f, c);
  CHECK(c.dim == 512);
  CHECK(c.ffn_dim == 1536);
  CHECK(c.n_layers == 8);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.head_dim == 64);
  CHECK(c.vocab_size == 32000);
  CHECK(c.context_length == 2048);
  CHECK(c.rope_theta == 10000.0);  // from transformers-5 rope_parameters
  CHECK(c.rope == RopeConvention::neox);  // HF rotate-half: recorded, weights not permuted
  CHECK(c.norm_eps == 1e-5);
  CHECK_FALSE(c.tied_embeddings);
  CHECK(c.bos_id == 1);
  CHECK(c.eos_id == 2);
  CHECK(f->metadata().get_string("general.name") == "tech-llama-58m");
  CHECK(f->metadata().get_string("tokenizer.kind") == "sentencepiece");
  CHECK(f->metadata().get_bytes("tokenizer.model").size() == 499723);
  CHECK(f->metadata().get_string("provenance.sources").find("model-00003-of-00003.safetensors\t37490424\t") != std::string::npos);

  uint64_t checked = 0, elements = 0;
  for (int s = 1; s <= 3; ++s) {
    const std::string shard = dir + "/model-0000" + std::to_string(s) + "-of-00003.safetensors";
    std::ifstream in(shard, std::ios::binary);
    for (const auto& [hf, st] : shard_table(shard)) {
      const TensorInfo& t = f->get(hf_to_sbits(hf));
      CHECK(t.layout == static_cast<uint32_t>(Layout::bf16));
      CHECK(st.dtype == "BF16");
      CHECK(t.shape == st.shape);
      const uint64_t n = t.element_count();
      auto b = f->bytes(t);
      for (uint64_t i : {uint64_t{0}, n / 3, n / 2 + 1, n - 1}) {
        uint16_t got;
        std::memcpy(&got, b.data() + i * 2, 2);
        CHECK_MESSAGE(got == u16_at(in, st.offset + i * 2), hf << "[" << i << "]");
      }
      elements += n;
      ++checked;
    }
  }
  CHECK(checked == f->tensors().size());
  CHECK(elements == 57942528);
}

TEST_CASE("HF import: tech-llama-58m --dtype f32 widens bf16 exactly" * doctest::timeout(30)) {
  const std::string dir = test::data_path("models/tech-llama-58m");
  const std::string out = test::temp_dir() + "/tech32.sbits";
  ImportOptions o;
  o.dtype = Layout::f32;
  import_model(dir, out, o);
  auto f = SbitsFile::open(out);
  const std::string shard = dir + "/model-00001-of-00003.safetensors";
  auto table = shard_table(shard);
  std::ifstream in(shard, std::ios::binary);
  const TensorInfo& t = f->get("blk.0.attn_q");
  CHECK(t.size == 512 * 512 * 4);
  for (uint64_t i : {uint64_t{0}, uint64_t{12345}, uint64_t{512 * 512 - 1}}) {
    float got;
    std::memcpy(&got, f->bytes(t).data() + i * 4, 4);
    CHECK(got == bf16_to_f32(u16_at(in, table.at("model.layers.0.self_attn.q_proj.weight").offset + i * 2)));
  }
}


TEST_CASE("HF import: Mistral, single file, tied without lm_head, top-level rope_theta, F16 kept") {
  test::TinyHf hf("F16");
  hf.write();
  std::ofstream(hf.dir + "/tokenizer_config.json") << json{{"chat_template", "{{ messages }}"}}.dump();
  const std::string out = test::temp_dir() + "/mistral.sbits";
  import_model(hf.dir, out, {});
  auto f = SbitsFile::open(out, {true});
  ModelConfig c = ModelConfig::from_metadata(f->metadata());
  validate_model_tensors(*f, c);
  CHECK(c.tied_embeddings);
  CHECK(f->find("output") == nullptr);
  CHECK(c.rope_theta == 1000000.0);
  CHECK(c.rope == RopeConvention::neox);
  CHECK(c.head_dim == 4);               // hidden / heads when head_dim is absent
  CHECK(c.context_length == 1024);      // limited to the sliding window
  CHECK(c.eos_id == 2);                 // first of a list
  CHECK(c.norm_eps == 1e-6);
  CHECK(f->get("tok_embd").layout == static_cast<uint32_t>(Layout::f16));
  CHECK(f->metadata().get_string("chat.template") == "{{ messages }}");
  uint16_t h;
  std::memcpy(&h, f->bytes(f->get("blk.0.attn_q")).data() + 2, 2);
  CHECK(h == hf.tensors[2].bytes[2] + (hf.tensors[2].bytes[3] << 8));
}

TEST_CASE("HF import: sharded index, head_dim given, explicit lm_head, bf16 -> f16") {
  test::TinyHf hf("BF16");
  hf.config["architectures"] = {"LlamaForCausalLM"};
  hf.config["tie_word_embeddings"] = false;
  hf.config["head_dim"] = 4;
  hf.config.erase("rope_theta");
  hf.config.erase("sliding_window");
  hf.config["rope_parameters"] = {{"rope_theta", 5000.0}, {"rope_type", "default"}};
  hf.write();
  std::filesystem::remove(hf.dir + "/model.safetensors");
  auto lm = hf.tensors[0];
  lm.name = "lm_head.weight";
  std::vector<test::StTensor> a(hf.tensors.begin(), hf.tensors.begin() + 5), b(hf.tensors.begin() + 5, hf.tensors.end());
  b.push_back(lm);
  test::write_safetensors(hf.dir + "/a.safetensors", a);
  test::write_safetensors(hf.dir + "/b.safetensors", b);
  json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
  for (auto& t : a) index["weight_map"][t.name] = "a.safetensors";
  for (auto& t : b) index["weight_map"][t.name] = "b.safetensors";
  std::ofstream(hf.dir + "/model.safetensors.index.json") << index.dump();
  const std::string out = test::temp_dir() + "/sharded.sbits";
  ImportOptions o;
  o.dtype = Layout::f16;
  o.chat_template = "llama2";
  import_model(hf.dir, out, o);
  auto f = SbitsFile::open(out, {true});
  ModelConfig c = ModelConfig::from_metadata(f->metadata());
  validate_model_tensors(*f, c);
  CHECK_FALSE(c.tied_embeddings);
  CHECK(c.rope_theta == 5000.0);
  CHECK(c.context_length == 4096);
  CHECK(f->metadata().get_string("chat.template") == "llama2");
  CHECK(f->metadata().get_string("general.name") == "hf");
  const TensorInfo& t = f->get("output");
  CHECK(t.layout == static_cast<uint32_t>(Layout::f16));
  uint16_t got, src = static_cast<uint16_t>(lm.bytes[10] | (lm.bytes[11] << 8));
  std::memcpy(&got, f->bytes(t).data() + 10, 2);
  CHECK(got == f32_to_f16(bf16_to_f32(src)));
}
