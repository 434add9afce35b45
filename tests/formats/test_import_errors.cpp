// Importer errors: each names the file and what was found, and leaves no output behind.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "formats/import.h"
#include "tests/formats/hf_fixture.h"
#include "tests/formats/test_util.h"
#include "tests/test_data.h"

using namespace sbits;
namespace fs = std::filesystem;
using test::TinyHf;

namespace {

// Imports and expects a FormatError containing `expect`; checks nothing was written.
void expect_import_error(const std::string& src, const std::string& expect, const ImportOptions& o = {}) {
  const std::string outdir = test::temp_dir();
  CHECK_THROWS_WITH_AS(import_model(src, outdir + "/out.sbits", o), doctest::Contains(expect.c_str()), FormatError);
  CHECK(fs::is_empty(outdir));
}

}  // namespace

TEST_CASE("import errors: unsupported architectures and settings") {
  TinyHf hf;
  hf.config["architectures"] = {"GPT2LMHeadModel"};
  hf.write();
  expect_import_error(hf.dir, "config.json: architectures = [\"GPT2LMHeadModel\"]; supported: LlamaForCausalLM, MistralForCausalLM");
  hf.config["architectures"] = {"LlamaForCausalLM"};
  hf.config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  hf.write();
  expect_import_error(hf.dir, "rope type \"llama3\"; supported: \"default\"");
  hf.config.erase("rope_scaling");
  hf.config["attention_bias"] = true;
  hf.write();
  expect_import_error(hf.dir, "attention_bias = true; bias tensors are not supported");
  hf.config.erase("attention_bias");
  hf.config["num_key_value_heads"] = 3;
  hf.write();
  expect_import_error(hf.dir, "llama.n_kv_heads=3: expected a divisor of llama.n_heads=2");
  hf.config["num_key_value_heads"] = "1";
  hf.write();
  expect_import_error(hf.dir, "num_key_value_heads: expected a positive integer, found \"1\"");
  hf.config["num_key_value_heads"] = 1;
  hf.config["tie_word_embeddings"] = "yes";  // nlohmann's own type error comes out as a FormatError
  hf.write();
  expect_import_error(hf.dir, "unexpected JSON content");
}

TEST_CASE("import errors: missing pieces") {
  expect_import_error(test::temp_dir() + "/nothing", "no such file or directory");
  const std::string empty = test::temp_dir();
  expect_import_error(empty, "no config.json: expected a Hugging Face model directory");
  TinyHf hf;
  hf.write();
  fs::remove(hf.dir + "/model.safetensors");
  expect_import_error(hf.dir, "no model.safetensors or model.safetensors.index.json");
  hf.write();
  fs::remove(hf.dir + "/tokenizer.model");
  expect_import_error(hf.dir, "no tokenizer.model");
  hf.write();
  hf.tensors.erase(hf.tensors.begin() + 3);  // blk.0.attn_k
  test::write_safetensors(hf.dir + "/model.safetensors", hf.tensors);
  expect_import_error(hf.dir, "tensor model.layers.0.self_attn.k_proj.weight (blk.0.attn_k): missing");
  std::ofstream(hf.dir + "/config.json") << "{ not json";
  expect_import_error(hf.dir, "config.json: not a JSON object");
}

TEST_CASE("import errors: shapes, dtypes, unknown tensors") {
  TinyHf hf;
  hf.tensors[2].shape = {4, 16};  // q_proj: same bytes, wrong shape
  hf.write();
  expect_import_error(hf.dir, "model.layers.0.self_attn.q_proj.weight: expected shape [8, 8] from config.json "
                              "(llama.n_heads=2 x llama.head_dim=4, llama.dim=8), found [4, 16]");
  TinyHf hf2;
  hf2.tensors[1].dtype = "I32";  // same size as F32
  hf2.write();
  expect_import_error(hf2.dir, "model.layers.0.input_layernorm.weight: dtype I32; supported: BF16, F16, F32");
  TinyHf hf3;
  hf3.tensors.push_back({"model.layers.0.self_attn.q_proj.bias", "F32", {8}, std::vector<uint8_t>(32)});
  hf3.write();
  expect_import_error(hf3.dir, "tensor model.layers.0.self_attn.q_proj.bias: not part of a Llama model");
}

TEST_CASE("import errors: malformed safetensors") {
  TinyHf hf;
  hf.write();
  auto b = test::read_file(hf.dir + "/model.safetensors");
  auto good = b;
  b[7] = 0x7f;  // header length far past the end
  test::write_file(hf.dir + "/model.safetensors", b);
  expect_import_error(hf.dir, "model.safetensors: header length");
  b = good;
  b.resize(b.size() - 4);  // last tensor's data_offsets now past the end
  test::write_file(hf.dir + "/model.safetensors", b);
  expect_import_error(hf.dir, "expected inside the");
  b = good;
  b[9] = '[';  // JSON no longer an object
  test::write_file(hf.dir + "/model.safetensors", b);
  expect_import_error(hf.dir, "header is not a JSON object");
  // Index that points outside the directory.
  test::write_file(hf.dir + "/model.safetensors", good);
  std::ofstream(hf.dir + "/model.safetensors.index.json")
      << nlohmann::json{{"weight_map", {{"model.norm.weight", "../model.safetensors"}}}}.dump();
  expect_import_error(hf.dir, "is not a file name in this directory");
}

TEST_CASE("import errors: f32 -> f16 overflow is refused, naming the tensor") {
  TinyHf hf;
  std::vector<float> v(8, 1.0f);
  v[3] = 1e5f;
  hf.tensors[1].bytes = test::floats_to_bytes(v);  // input_layernorm
  hf.write();
  ImportOptions o;
  o.dtype = Layout::f16;
  expect_import_error(hf.dir, "model.layers.0.input_layernorm.weight: 1 values exceed the f16 range (largest |x| = 100000); use --dtype bf16 or f32", o);
}

TEST_CASE("import errors: llama2.c files") {
  const std::string dir = test::temp_dir();
  auto bin = test::read_file(test::data_path("models/stories260K.bin"));
  ImportOptions o;
  o.tokenizer_path = test::data_path("models/tok512.model");
  bin.resize(bin.size() - 4);
  test::write_file(dir + "/short.bin", bin);
  expect_import_error(dir + "/short.bin",
                      "short.bin: file is 1056536 bytes; the header (dim=64, hidden_dim=172, n_layers=5, n_heads=8, "
                      "n_kv_heads=4, vocab_size=512, seq_len=512) implies 1056540",
                      o);
  expect_import_error(test::data_path("models/stories260K.bin"), "carry no tokenizer; pass --tokenizer");
  o.tokenizer_path = test::data_path("models/stories260K.bin");
  expect_import_error(test::data_path("models/stories260K.bin"), "not a tokenizer", o);
  o.tokenizer_path = test::data_path("tokenizers/llama2_tokenizer.model");
  expect_import_error(test::data_path("models/stories260K.bin"), "tokenizer has 32000 pieces, more than the model's vocab_size 512", o);
  test::write_file(dir + "/zero.bin", std::vector<uint8_t>(28, 0));
  expect_import_error(dir + "/zero.bin", "header dim: expected a positive int32, found 0");
  expect_import_error(test::data_path("models/stories260K.gguf"), "GGUF files are not supported");
  o.tokenizer_path = test::data_path("models/tok512.model");
  o.chat_template = "nonesuch";
  expect_import_error(test::data_path("models/stories260K.bin"), "chat template \"nonesuch\": not a known name", o);
}

TEST_CASE("import errors: refuses to write over its own source") {
  const std::string dir = test::temp_dir();
  fs::copy_file(test::data_path("models/stories260K.bin"), dir + "/m.bin");
  ImportOptions o;
  o.tokenizer_path = test::data_path("models/tok512.model");
  CHECK_THROWS_WITH_AS(import_model(dir + "/m.bin", dir + "/m.bin", o), doctest::Contains("refusing to overwrite an input"),
                       FormatError);
  CHECK(fs::file_size(dir + "/m.bin") == 1056540);
  CHECK_THROWS_AS(import_model(dir + "/m.bin", o.tokenizer_path, o), FormatError);
}
