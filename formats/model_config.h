// Architecture hyper-parameters of a Llama-family model, as stored in .sbits metadata, and the
// canonical tensor names. See SBITS.md "Model metadata" and "Tensor names".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/sbits_file.h"

namespace sbits {

enum class RopeConvention { neox, interleaved };  // "neox" (HF rotate-half), "interleaved" (Meta, llama2.c)

struct ModelConfig {
  std::string architecture = "llama";
  uint64_t dim = 0;           // hidden size
  uint64_t ffn_dim = 0;       // intermediate size
  uint64_t n_layers = 0;
  uint64_t n_heads = 0;
  uint64_t n_kv_heads = 0;
  uint64_t head_dim = 0;
  uint64_t vocab_size = 0;
  uint64_t context_length = 0;
  double rope_theta = 10000.0;
  RopeConvention rope = RopeConvention::neox;
  double norm_eps = 1e-5;
  bool tied_embeddings = false;
  int64_t bos_id = 1;         // -1: none
  int64_t eos_id = 2;         // -1: none

  // Reads and checks the llama.* / tokenizer.* keys; throws FormatError naming the key.
  static ModelConfig from_metadata(const Metadata& meta);
  void to_metadata(Metadata& meta) const;
  // Checks internal consistency (heads divide, dims non-zero, ...); throws FormatError.
  void validate() const;
};

// Canonical tensor names ("tok_embd", "blk.3.attn_q", ...).
std::string tensor_name_embedding();
std::string tensor_name_output_norm();
std::string tensor_name_output();  // absent when tied_embeddings
std::string tensor_name_layer(uint64_t layer, const char* suffix);  // suffix: "attn_norm", ...

// The expected shape of every tensor of a model with this config, by name.
struct ExpectedTensor {
  std::string name;
  std::vector<uint64_t> shape;
  std::string derivation;  // where the shape comes from, for errors: "llama.vocab_size=512, llama.dim=64"
};
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config);

// Checks that `file` holds exactly the tensors the config asks for, with matching shapes, and
// that their layouts are known. Throws FormatError: "blk.0.attn_q: expected shape [512, 512]
// from llama.n_heads=8 x llama.head_dim=64, found [512, 256]".
void validate_model_tensors(const SbitsFile& file, const ModelConfig& config);

}  // namespace sbits
