// A small synthetic Hugging Face checkpoint directory for import tests.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "formats/dtype_convert.h"
#include "formats/model_config.h"
#include "tests/formats/test_util.h"
#include "tests/test_data.h"

namespace sbits::test {

using json = nlohmann::json;

// A synthetic HF directory: vocab 512 (so tok512.model fits), dim 8, 1 layer.
struct TinyHf {
  std::string dir;
  json config;
  std::vector<StTensor> tensors;

  explicit TinyHf(const std::string& dtype = "F32") {
    dir = temp_dir() + "/hf";
    std::filesystem::create_directories(dir);
    config = {{"architectures", {"MistralForCausalLM"}}, {"hidden_size", 8}, {"intermediate_size", 12},
              {"num_hidden_layers", 1}, {"num_attention_heads", 2}, {"num_key_value_heads", 1},
              {"vocab_size", 512}, {"max_position_embeddings", 4096}, {"rms_norm_eps", 1e-6},
              {"rope_theta", 1000000.0}, {"sliding_window", 1024}, {"tie_word_embeddings", true},
              {"bos_token_id", 1}, {"eos_token_id", {2, 3}}, {"hidden_act", "silu"}};
    ModelConfig c = tiny_config();
    c.vocab_size = 512;
    c.tied_embeddings = true;
    float x = 0.0f;
    for (const ExpectedTensor& e : expected_tensors(c)) {
      uint64_t n = 1;
      for (uint64_t d : e.shape) n *= d;
      std::vector<float> v(n);
      for (float& f : v) f = (x += 0.25f);
      std::string hf = e.name == "tok_embd" ? "model.embed_tokens.weight"
                       : e.name == "output_norm" ? "model.norm.weight"
                                                 : "";
      if (hf.empty()) {
        static const std::map<std::string, std::string> m = {
            {"attn_norm", "input_layernorm"}, {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"},
            {"attn_v", "self_attn.v_proj"}, {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
            {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"}, {"ffn_down", "mlp.down_proj"}};
        hf = "model.layers.0." + m.at(e.name.substr(6)) + ".weight";
      }
      std::vector<uint8_t> bytes;
      if (dtype == "F32") {
        bytes = floats_to_bytes(v);
      } else {
        for (float f : v) {
          uint16_t h = dtype == "F16" ? f32_to_f16(f) : f32_to_bf16(f);
          bytes.push_back(static_cast<uint8_t>(h));
          bytes.push_back(static_cast<uint8_t>(h >> 8));
        }
      }
      tensors.push_back({hf, dtype, e.shape, bytes});
    }
  }
  void write() const {
    std::ofstream(dir + "/config.json") << config.dump();
    write_safetensors(dir + "/model.safetensors", tensors);
    std::filesystem::copy_file(data_path("models/tok512.model"), dir + "/tokenizer.model",
                               std::filesystem::copy_options::overwrite_existing);
  }
};


}  // namespace sbits::test
