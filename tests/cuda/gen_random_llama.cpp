// sbits-gen-random-llama: a Llama-shaped .sbits with random tiled weights, for benchmarks of
// models too large to keep in git (a Llama-2-7B shape at 2.5 bits per weight is 2.1 GB: make it
// on the machine that measures it).
//
//   sbits-gen-random-llama --like SMALL.sbits -o OUT.sbits --bpw 2.5 [--layers 32] [--seed 1]
//
// Shape: Llama-2-7B (dim 4096, 32 heads of 128, ffn 11008, vocab 32000, context 4096); the
// tokenizer and the other non-shape metadata come from --like (a model with the same 32000-token
// vocabulary, e.g. tech-llama-58m). Every matrix, the embedding and the classifier too, is in
// the tiled layout (64 x 128 tiles, one scale group) with random codes and scales that make
// weights uniform in about +-0.035 (never all zero); norms are 1 + small noise. Bitwidths per
// tile: the two neighbours of the target, mixed in the exact proportion that gives --bpw
// counting the scales (a b-bit tile costs b + 0.25 bits per weight), placed at random.
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "formats/sbits_file.h"
#include "formats/tiled_layout.h"
#include "kernels/quant/tiled.h"

namespace {

using namespace sbits;

struct Options {
  std::string like, out;
  double bpw = 2.5;
  int layers = 32;
  uint64_t seed = 1;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--like" && i + 1 < argc) o.like = argv[++i];
    else if (a == "-o" && i + 1 < argc) o.out = argv[++i];
    else if (a == "--bpw" && i + 1 < argc) o.bpw = std::stod(argv[++i]);
    else if (a == "--layers" && i + 1 < argc) o.layers = std::stoi(argv[++i]);
    else if (a == "--seed" && i + 1 < argc) o.seed = std::stoull(argv[++i]);
    else throw std::invalid_argument("usage: sbits-gen-random-llama --like SMALL.sbits -o OUT.sbits [--bpw 2.5] "
                                     "[--layers 32] [--seed 1]");
  }
  if (o.like.empty() || o.out.empty()) throw std::invalid_argument("--like and -o are required");
  if (o.bpw < 2.25 || o.bpw > 8.25) throw std::invalid_argument("--bpw must be in [2.25, 8.25] (2 to 8 bits + scales)");
  return o;
}

// f16 bits of a normal float (truncated: this only makes test data).
uint16_t to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const int e = int((u >> 23) & 0xff) - 127 + 15;
  return uint16_t(sign | uint32_t(e) << 10 | ((u >> 13) & 0x3ffu));
}

// Per-tile bitwidths: lo and hi = the next codec width, a fraction f of hi tiles.
std::vector<uint8_t> bit_table(uint64_t tiles, double bpw, std::mt19937_64& rng) {
  static const int kBits[] = {2, 3, 4, 5, 6, 8};
  int lo = 2, hi = 2;
  for (int b : kBits)
    if (b + 0.25 <= bpw + 1e-9) lo = b;
  hi = lo;
  for (int b : kBits)
    if (b > lo) { hi = b; break; }
  const double f = hi == lo ? 0.0 : (bpw - (lo + 0.25)) / double(hi - lo);
  std::vector<uint8_t> t(tiles, uint8_t(lo));
  const auto n_hi = uint64_t(f * double(tiles) + 0.5);
  for (uint64_t i = 0; i < n_hi; ++i) t[i] = uint8_t(hi);
  std::shuffle(t.begin(), t.end(), rng);
  return t;
}

std::vector<uint8_t> random_tiled(uint64_t rows, uint64_t cols, double bpw, std::mt19937_64& rng) {
  const TiledParams p;
  const TiledGrid g = tiled_grid(p, rows, cols);
  const std::vector<uint8_t> bits = bit_table(g.count(), bpw, rng);
  std::vector<uint8_t> out(tiled_tensor_bytes(p, rows, cols, bits));
  std::memcpy(out.data(), bits.data(), bits.size());
  uint64_t off = tiled_table_bytes(g);
  std::uniform_real_distribution<float> jitter(0.8f, 1.2f);
  for (uint64_t tr = 0; tr < g.tiles_r; ++tr)
    for (uint64_t tc = 0; tc < g.tiles_c; ++tc) {
      const int b = bits[tr * g.tiles_c + tc];
      const uint64_t bytes = tiled_tile_bytes(p, g, tr, tc, uint32_t(b));
      const int rows_t = int(std::min<uint64_t>(64, rows - tr * 64));
      const int64_t units = kernels::quant::units_for_cols(int64_t(std::min<uint64_t>(128, cols - tc * 128)));
      const uint64_t codes = kernels::quant::tile_plane_bytes(rows_t, units, kernels::quant::plane0_bits(b)) +
                             kernels::quant::tile_plane_bytes(rows_t, units, kernels::quant::plane1_bits(b));
      for (uint64_t i = 0; i < codes; i += 8) {
        const uint64_t r = rng();
        std::memcpy(out.data() + off + i, &r, std::min<uint64_t>(8, codes - i));
      }
      auto* sm = reinterpret_cast<uint16_t*>(out.data() + off + codes);
      for (int r = 0; r < rows_t; ++r) {  // one group per row: w = scale q + min in +-0.035
        const float scale = 0.07f / float((1 << b) - 1) * jitter(rng);
        sm[2 * r] = to_f16(scale);
        sm[2 * r + 1] = to_f16(-0.035f * jitter(rng));
      }
      off += bytes;
    }
  return out;
}

void add_matrix(SbitsWriter& w, const std::string& name, uint64_t rows, uint64_t cols, double bpw,
                std::mt19937_64& rng) {
  const std::vector<uint8_t> bytes = random_tiled(rows, cols, bpw, rng);
  w.add_tensor(name, kTiledLayoutId, kTiledLayoutVersion, {rows, cols}, bytes, encode_tiled_aux(TiledParams{}));
}

void add_norm(SbitsWriter& w, const std::string& name, uint64_t dim, std::mt19937_64& rng) {
  std::vector<float> v(dim);
  std::uniform_real_distribution<float> d(0.9f, 1.1f);
  for (float& x : v) x = d(rng);
  w.add_tensor(name, uint32_t(Layout::f32), 1, {dim},
               std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4));
}

void generate(const Options& o) {
  auto like = SbitsFile::open(o.like);
  ModelConfig c = ModelConfig::from_metadata(like->metadata());
  if (c.vocab_size != 32000)
    throw std::invalid_argument(o.like + ": vocabulary of " + std::to_string(c.vocab_size) +
                                " tokens, expected 32000 (the Llama-2 tokenizer)");
  c.dim = 4096, c.ffn_dim = 11008, c.n_layers = uint64_t(o.layers), c.n_heads = 32, c.n_kv_heads = 32;
  c.head_dim = 128, c.context_length = 4096, c.tied_embeddings = false;
  SbitsWriter w(o.out, {o.like});
  for (const auto& [key, value] : like->metadata().entries())
    if (key.rfind("quantizer.", 0) != 0) w.metadata().set(key, value);
  c.to_metadata(w.metadata());
  w.metadata().set("general.name", std::string("random Llama-2-7B shape, ") + std::to_string(o.bpw) + " bpw");
  std::mt19937_64 rng(o.seed);
  add_matrix(w, "tok_embd", c.vocab_size, c.dim, o.bpw, rng);
  add_norm(w, "output_norm", c.dim, rng);
  add_matrix(w, "output", c.vocab_size, c.dim, o.bpw, rng);
  for (int l = 0; l < o.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add_norm(w, b + "attn_norm", c.dim, rng);
    add_matrix(w, b + "attn_q", c.dim, c.dim, o.bpw, rng);
    add_matrix(w, b + "attn_k", c.dim, c.dim, o.bpw, rng);
    add_matrix(w, b + "attn_v", c.dim, c.dim, o.bpw, rng);
    add_matrix(w, b + "attn_output", c.dim, c.dim, o.bpw, rng);
    add_norm(w, b + "ffn_norm", c.dim, rng);
    add_matrix(w, b + "ffn_gate", c.ffn_dim, c.dim, o.bpw, rng);
    add_matrix(w, b + "ffn_up", c.ffn_dim, c.dim, o.bpw, rng);
    add_matrix(w, b + "ffn_down", c.dim, c.ffn_dim, o.bpw, rng);
  }
  w.commit();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    generate(parse(argc, argv));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbits-gen-random-llama: %s\n", e.what());
    return 1;
  }
}
