// llama2.c import: stories260K checked against values read independently from the .bin, and a
// synthetic checkpoint with an unshared classifier that pins the w1/w2/w3 mapping.
#include <doctest/doctest.h>

#include <fstream>

#include "formats/dtype_convert.h"
#include "formats/import.h"
#include "formats/model_config.h"
#include "tests/formats/test_util.h"
#include "tests/test_data.h"

using namespace sbits;

namespace {

// Reads float32 element `index` at byte `offset` of a file with plain reads.
float float_at(std::ifstream& in, uint64_t offset, uint64_t index) {
  float v;
  in.seekg(static_cast<std::streamoff>(offset + index * 4));
  in.read(reinterpret_cast<char*>(&v), 4);
  REQUIRE(in.good());
  return v;
}

float sbits_f32(const SbitsFile& f, const std::string& name, uint64_t index) {
  auto b = f.bytes(f.get(name));
  float v;
  std::memcpy(&v, b.data() + index * 4, 4);
  return v;
}

std::string import_stories(const std::string& tokenizer, std::optional<Layout> dtype = {}) {
  const std::string out = test::temp_dir() + "/stories.sbits";
  ImportOptions o;
  o.tokenizer_path = test::data_path(tokenizer);
  o.dtype = dtype;
  ImportResult r = import_model(test::data_path("models/stories260K.bin"), out, o);
  CHECK(r.kind == SourceKind::llama2c);
  return out;
}

}  // namespace

TEST_CASE("llama2.c import: stories260K config, tokenizer and every tensor against the source") {
  auto f = SbitsFile::open(import_stories("models/tok512.model"), {true});
  ModelConfig c = ModelConfig::from_metadata(f->metadata());
  validate_model_tensors(*f, c);
  CHECK(c.dim == 64);
  CHECK(c.ffn_dim == 172);
  CHECK(c.n_layers == 5);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.head_dim == 8);
  CHECK(c.vocab_size == 512);
  CHECK(c.context_length == 512);
  CHECK(c.tied_embeddings);
  CHECK(c.rope == RopeConvention::interleaved);  // llama2.c rotates (2i, 2i+1): recorded, not permuted
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.norm_eps == 1e-5);
  CHECK(c.bos_id == 1);
  CHECK(c.eos_id == 2);
  const Metadata& m = f->metadata();
  CHECK(m.get_string("tokenizer.kind") == "sentencepiece");
  CHECK(m.get_bytes("tokenizer.model") == test::read_file(test::data_path("models/tok512.model")));
  CHECK(m.get_string("general.name") == "stories260K");
  CHECK(m.get_string("chat.template") == "plain");
  CHECK(m.get_string("provenance.tool") == "sbits-convert 0.1.0");
  CHECK(m.get_string("provenance.sources").find("stories260K.bin\t1056540\t") != std::string::npos);
  CHECK(m.get_string("provenance.converter.dtype") == "source");

  // Independent offsets, from the llama2.c layout written out by hand here.
  const uint64_t D = 64, H = 172, L = 5, V = 512, KV = 32;
  struct Src {
    const char* name;
    uint64_t per_layer, offset;  // elements per layer, element offset of the block
  };
  uint64_t o = 0;
  auto next = [&o](uint64_t n) { uint64_t at = o; o += n; return at; };
  const uint64_t emb = next(V * D), att = next(L * D), wq = next(L * D * D), wk = next(L * KV * D), wv = next(L * KV * D),
                 wo = next(L * D * D), ffn = next(L * D), w1 = next(L * H * D), w2 = next(L * D * H), w3 = next(L * H * D),
                 fin = next(D);
  const Src blocks[] = {{"attn_norm", D, att}, {"attn_q", D * D, wq},  {"attn_k", KV * D, wk}, {"attn_v", KV * D, wv},
                        {"attn_output", D * D, wo}, {"ffn_norm", D, ffn}, {"ffn_gate", H * D, w1},
                        {"ffn_down", D * H, w2},  {"ffn_up", H * D, w3}};
  std::ifstream in(test::data_path("models/stories260K.bin"), std::ios::binary);
  const uint64_t base = 28;
  for (uint64_t i : {uint64_t{0}, uint64_t{1}, V * D / 2 + 3, V * D - 1}) {
    CHECK(sbits_f32(*f, "tok_embd", i) == float_at(in, base, emb + i));
  }
  for (uint64_t i : {uint64_t{0}, D - 1}) CHECK(sbits_f32(*f, "output_norm", i) == float_at(in, base, fin + i));
  uint64_t elements = V * D + D;
  for (uint64_t l = 0; l < L; ++l) {
    for (const Src& s : blocks) {
      const std::string name = tensor_name_layer(l, s.name);
      CHECK(f->get(name).element_count() == s.per_layer);
      elements += s.per_layer;
      for (uint64_t i : {uint64_t{0}, s.per_layer / 2 + 1, s.per_layer - 1}) {
        CHECK_MESSAGE(sbits_f32(*f, name, i) == float_at(in, base, s.offset + l * s.per_layer + i), name << "[" << i << "]");
      }
    }
  }
  uint64_t total = 0;
  for (const TensorInfo& t : f->tensors()) total += t.element_count();
  CHECK(total == elements);
  CHECK(f->find("output") == nullptr);
}

TEST_CASE("llama2.c import: a llama2.c tokenizer.bin is recognised by content") {
  auto f = SbitsFile::open(import_stories("models/tok512.bin"));
  CHECK(f->metadata().get_string("tokenizer.kind") == "llama2c");
  CHECK(f->metadata().get_bytes("tokenizer.model") == test::read_file(test::data_path("models/tok512.bin")));
}

TEST_CASE("llama2.c import: --dtype f16 and bf16 round each value to nearest even") {
  for (Layout l : {Layout::f16, Layout::bf16}) {
    auto f = SbitsFile::open(import_stories("models/tok512.model", l), {true});
    std::ifstream in(test::data_path("models/stories260K.bin"), std::ios::binary);
    const TensorInfo& t = f->get("tok_embd");
    CHECK(t.layout == static_cast<uint32_t>(l));
    CHECK(t.size == 512 * 64 * 2);
    auto b = f->bytes(t);
    for (uint64_t i : {uint64_t{0}, uint64_t{777}, uint64_t{512 * 64 - 1}}) {
      uint16_t h;
      std::memcpy(&h, b.data() + i * 2, 2);
      float src = float_at(in, 28, i);
      CHECK(h == (l == Layout::f16 ? f32_to_f16(src) : f32_to_bf16(src)));
    }
    CHECK(f->metadata().get_string("provenance.converter.dtype") == layout_name(static_cast<uint32_t>(l)));
  }
}

TEST_CASE("llama2.c import: unshared classifier (negative vocab) and the w1/w2/w3 mapping") {
  const std::string dir = test::temp_dir();
  // dim 8, hidden 12, 1 layer, 2 heads, 1 kv head, vocab -16 (own classifier), seq 4.
  const int32_t hdr[7] = {8, 12, 1, 2, 1, -16, 4};
  const uint64_t n = 16 * 8 + 8 + 64 + 32 + 32 + 64 + 8 + 96 + 96 + 96 + 8 + 4 * 2 + 4 * 2 + 16 * 8;
  std::vector<float> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i);  // each value is its own index
  std::vector<uint8_t> bytes(28);
  std::memcpy(bytes.data(), hdr, 28);
  auto fb = test::floats_to_bytes(v);
  bytes.insert(bytes.end(), fb.begin(), fb.end());
  test::write_file(dir + "/m.bin", bytes);
  // A llama2.c tokenizer.bin with 16 one-byte tokens.
  std::vector<uint8_t> tok = {1, 0, 0, 0};
  for (int i = 0; i < 16; ++i) {
    const uint8_t e[9] = {0, 0, 0, 0, 1, 0, 0, 0, static_cast<uint8_t>('a' + i)};
    tok.insert(tok.end(), e, e + 9);
  }
  test::write_file(dir + "/tok.bin", tok);
  ImportOptions o;
  o.tokenizer_path = dir + "/tok.bin";
  o.chat_template = "chatml";
  o.name = "synthetic";
  import_model(dir + "/m.bin", dir + "/m.sbits", o);
  auto f = SbitsFile::open(dir + "/m.sbits", {true});
  ModelConfig c = ModelConfig::from_metadata(f->metadata());
  validate_model_tensors(*f, c);
  CHECK_FALSE(c.tied_embeddings);
  CHECK(f->metadata().get_string("chat.template") == "chatml");
  CHECK(f->metadata().get_string("general.name") == "synthetic");
  const uint64_t w1 = 128 + 8 + 64 + 32 + 32 + 64 + 8, w2 = w1 + 96, w3 = w2 + 96, wcls = w3 + 96 + 8 + 16;
  CHECK(sbits_f32(*f, "blk.0.ffn_gate", 0) == static_cast<float>(w1));
  CHECK(sbits_f32(*f, "blk.0.ffn_down", 5) == static_cast<float>(w2 + 5));
  CHECK(sbits_f32(*f, "blk.0.ffn_up", 95) == static_cast<float>(w3 + 95));
  CHECK(sbits_f32(*f, "output", 0) == static_cast<float>(wcls));
  CHECK(sbits_f32(*f, "output", 127) == static_cast<float>(n - 1));
  CHECK(f->get("blk.0.ffn_down").shape == std::vector<uint64_t>{8, 12});
}
