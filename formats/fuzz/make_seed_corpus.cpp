// Writes a few small valid .sbits files into DIR, as seeds for fuzz_sbits_reader: a tiny
// complete model (so the fuzzer reaches model validation), a file with every plain layout and
// metadata type, a tiled (quantized) tensor with mixed bitwidths and edge tiles, and an empty
// file with metadata only.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>

#include "formats/model_config.h"
#include "formats/sbits_file.h"
#include "formats/tiled_layout.h"

namespace {

using namespace sbits;

void tiny_model(const std::string& path) {
  ModelConfig c;
  c.dim = 4;
  c.ffn_dim = 4;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 2;
  c.vocab_size = 4;
  c.context_length = 8;
  c.tied_embeddings = true;
  SbitsWriter w(path, {});
  c.to_metadata(w.metadata());
  w.metadata().set("tokenizer.kind", std::string("llama2c"));
  for (const ExpectedTensor& e : expected_tensors(c)) {
    uint64_t n = 1;
    for (uint64_t d : e.shape) n *= d;
    std::vector<uint16_t> v(n, 0x3c00);  // f16 ones
    w.add_tensor(e.name, static_cast<uint32_t>(Layout::f16), 1, e.shape,
                 {reinterpret_cast<const uint8_t*>(v.data()), v.size() * 2});
  }
  w.commit();
}

void all_types(const std::string& path) {
  SbitsWriter w(path, {});
  Metadata& m = w.metadata();
  m.set("a.u64", uint64_t{7});
  m.set("b.i64", int64_t{-7});
  m.set("c.f64", 0.5);
  m.set("d.bool", true);
  m.set("e.string", std::string("text"));
  m.set("f.bytes", std::vector<uint8_t>{1, 2, 3});
  const std::vector<uint8_t> d(16, 0x11);
  for (uint32_t id = 1; id <= 5; ++id) {
    Layout l = static_cast<Layout>(id);
    uint64_t n = 16 / plain_layout_bytes(l, 1);
    w.add_tensor(std::string("t") + layout_name(id), id, 1, {n}, d);
  }
  w.commit();
}

// Layout 16 with small tiles so the fuzzer reaches every tile shape and bitwidth cheaply:
// [6, 40] in 4 x 32 tiles is four tiles, three of them edge tiles.
void tiled(const std::string& path) {
  const TiledParams p{4, 32, 32};
  const std::vector<uint8_t> bits = {2, 16, 5, 8};
  std::vector<uint8_t> d(tiled_tensor_bytes(p, 6, 40, bits), 0);
  std::copy(bits.begin(), bits.end(), d.begin());
  SbitsWriter w(path, {});
  w.add_tensor("w", kTiledLayoutId, kTiledLayoutVersion, {6, 40}, d, encode_tiled_aux(p));
  w.commit();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: sbits_make_seed_corpus DIR\n");
    return 2;
  }
  try {
    const std::string dir = argv[1];
    std::filesystem::create_directories(dir);
    tiny_model(dir + "/tiny_model.sbits");
    all_types(dir + "/all_types.sbits");
    tiled(dir + "/tiled.sbits");
    SbitsWriter(dir + "/metadata_only.sbits", {}).commit();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbits_make_seed_corpus: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
