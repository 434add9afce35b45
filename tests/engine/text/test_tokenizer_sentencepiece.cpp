// Tokenizer kind "sentencepiece" on the Llama 2 vocabulary: llama.cpp's test vectors, the
// tech-llama-58m reference prompts, special-token parsing and per-token decoding.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <random>
#include <set>
#include <sstream>

#include "tests/engine/text/text_test_util.h"

namespace sbits {
namespace {

using test::data_path;
using test::reference_sp;
using test::sp_decode;
using test::sp_encode;

constexpr const char* kLlama2Model = "tokenizers/llama2_tokenizer.model";

struct Vector {
  std::string input;
  std::vector<int32_t> expected;
};

// llama.cpp's format: inputs separated by "\n__ggml_vocab_test__\n" (the newline before the
// separator line is not part of the input); one line of ids per input in the .out file.
std::vector<Vector> load_ggml_vectors(const std::string& stem) {
  const std::string inp = test::read_text(data_path(stem + ".inp"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  size_t pos = 0;
  while (pos < inp.size()) {
    const size_t at = inp.find(sep, pos);
    REQUIRE_MESSAGE(at != std::string::npos, "the .inp file must end with a separator line");
    inputs.push_back(inp.substr(pos, at - pos));
    pos = at + sep.size();
  }
  std::istringstream out(test::read_text(data_path(stem + ".out")));
  std::vector<Vector> vectors;
  std::string line;
  for (const auto& input : inputs) {
    REQUIRE(std::getline(out, line));
    Vector v{input, {}};
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) v.expected.push_back(id);
    vectors.push_back(std::move(v));
  }
  CHECK_FALSE(std::getline(out, line));  // as many outputs as inputs
  return vectors;
}

std::string escaped(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out;
}

TEST_CASE("llama.cpp's llama-spm vectors tokenize as SentencePiece does") {
  const Tokenizer& tok = test::llama2_tokenizer();
  const auto& sp = reference_sp(kLlama2Model);
  const auto vectors = load_ggml_vectors("tokenizers/ggml-vocab-llama-spm.gguf");
  REQUIRE(vectors.size() == 46);
  // The vectors come from Hugging Face's tokenizer. Where it and SentencePiece disagree, we
  // follow SentencePiece (the model's own tokenizer) and list the vector here by index.
  const std::set<size_t> known_differences = {};
  std::set<size_t> differing;
  for (size_t i = 0; i < vectors.size(); ++i) {
    const auto& v = vectors[i];
    CAPTURE(i);
    CAPTURE(escaped(v.input));
    const auto ours = tok.encode(v.input, /*add_bos=*/false);
    CHECK(ours == sp_encode(sp, v.input));
    if (ours != v.expected) {
      differing.insert(i);
      std::printf("ggml vocab vector %zu differs from SentencePiece: \"%s\"\n", i, escaped(v.input).c_str());
    }
  }
  CHECK(differing == known_differences);
  std::printf("ggml-vocab-llama-spm: %zu vectors, %zu differ from Hugging Face's ids\n", vectors.size(),
              differing.size());
}

TEST_CASE("tech-llama-58m reference prompts and greedy texts") {
  const Tokenizer& tok = test::llama2_tokenizer();
  const auto ref = nlohmann::json::parse(test::read_text(data_path("models/tech-llama-58m/reference_outputs.json")));
  const auto& gens = ref.at("generations");
  REQUIRE(gens.size() == 5);
  for (const auto& g : gens) {
    const auto prompt = g.at("prompt").get<std::string>();
    const auto prompt_ids = g.at("prompt_ids").get<std::vector<int32_t>>();
    const auto greedy_ids = g.at("greedy_ids").get<std::vector<int32_t>>();
    CAPTURE(prompt);
    CHECK(tok.encode(prompt, /*add_bos=*/true) == prompt_ids);
    CHECK(tok.decode(greedy_ids) == g.at("greedy_text").get<std::string>());

    // Streaming the continuation after the prompt gives the text the whole sequence adds.
    StreamDecoder dec(tok);
    dec.push(prompt_ids.back());
    std::string streamed;
    for (int32_t id : greedy_ids) streamed += dec.push(id);
    streamed += dec.flush();
    std::vector<int32_t> all = prompt_ids;
    all.insert(all.end(), greedy_ids.begin(), greedy_ids.end());
    CHECK(tok.decode(prompt_ids) + streamed == tok.decode(all));
  }
}

TEST_CASE("basic properties of the Llama 2 vocabulary") {
  const Tokenizer& tok = test::llama2_tokenizer();
  CHECK(tok.vocab_size() == 32000);
  CHECK(tok.bos_id() == 1);
  CHECK(tok.eos_id() == 2);
  CHECK(tok.is_control(1));
  CHECK(tok.is_control(2));
  CHECK_FALSE(tok.is_control(0));  // <unk> is "unknown", not control
  CHECK_FALSE(tok.is_control(15043));
  CHECK_FALSE(tok.is_control(-1));
  CHECK_FALSE(tok.is_control(32000));
  CHECK(tok.piece(15043) == "\xE2\x96\x81Hello");
  CHECK(tok.piece(13) == "<0x0A>");
  CHECK(tok.encode("", true) == std::vector<int32_t>{1});
  CHECK(tok.encode("", false).empty());
  CHECK(tok.encode("Hello world", true) == std::vector<int32_t>{1, 15043, 3186});
}

TEST_CASE("encode_with_specials maps control pieces and encodes the text between them separately") {
  const Tokenizer& tok = test::llama2_tokenizer();
  const auto& sp = reference_sp(kLlama2Model);
  const auto concat = [](std::initializer_list<std::vector<int32_t>> parts) {
    std::vector<int32_t> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
  };
  // Plain encode treats "<s>" as text.
  CHECK(tok.encode("<s>", false) == sp_encode(sp, "<s>"));
  CHECK(tok.encode("<s>", false) != std::vector<int32_t>{1});

  // Llama 2 chat: "<s>[INST]" is BOS, then "▁[", "INST", "]" (the dummy prefix of the segment).
  const auto chat = tok.encode_with_specials("<s>[INST] Hi [/INST]", false);
  CHECK(chat == concat({{1}, sp_encode(sp, "[INST] Hi [/INST]")}));
  CHECK(std::vector<int32_t>(chat.begin(), chat.begin() + 4) == std::vector<int32_t>{1, 518, 25580, 29962});

  CHECK(tok.encode_with_specials("a</s><s>b", false) == concat({sp_encode(sp, "a"), {2, 1}, sp_encode(sp, "b")}));
  CHECK(tok.encode_with_specials("<unk>", false) == std::vector<int32_t>{0});
  CHECK(tok.encode_with_specials("</s>", true) == std::vector<int32_t>{1, 2});
  CHECK(tok.encode_with_specials("x</s", false) == sp_encode(sp, "x</s"));  // incomplete: text
  CHECK(tok.encode_with_specials("", false).empty());
  CHECK(tok.encode_with_specials("plain text", true) == tok.encode("plain text", true));
  // Whitespace between specials is a segment of its own, with its dummy prefix.
  CHECK(tok.encode_with_specials("</s>\n<s>", false) == concat({{2}, sp_encode(sp, "\n"), {1}}));
}

TEST_CASE("token_bytes: spaces, byte pieces, control tokens, BOS") {
  const Tokenizer& tok = test::llama2_tokenizer();
  CHECK(tok.token_bytes(15043, 3186) == " Hello");
  CHECK(tok.token_bytes(15043, -1) == " Hello");
  CHECK(tok.token_bytes(15043, 1) == "Hello");  // after BOS the leading space goes
  CHECK(tok.token_bytes(13, 1) == "\n");
  CHECK(tok.token_bytes(3 + 0x20, 1) == " ");  // <0x20> is a byte, not a "▁": kept after BOS
  CHECK(tok.token_bytes(3 + 0xF0, 5) == "\xF0");
  CHECK(tok.token_bytes(1, 5).empty());
  CHECK(tok.token_bytes(2, 5).empty());
  CHECK(tok.token_bytes(0, 5) == " \xE2\x81\x87 ");  // SentencePiece's unknown surface " ⁇ "
  CHECK(tok.token_bytes(29871, 1).empty());          // "▁" right after BOS
  CHECK_THROWS_AS(tok.token_bytes(-1, 1), TokenizerError);
  CHECK_THROWS_AS(tok.token_bytes(32000, 1), TokenizerError);
  CHECK_THROWS_AS(tok.piece(32000), TokenizerError);
  const int32_t bad[] = {1, 32000};
  CHECK_THROWS_AS(tok.decode(bad), TokenizerError);
}

// Random id sequences (words, bytes, control and unknown tokens): our per-token bytes,
// streamed, must give what SentencePiece's whole-sequence decode gives after a BOS.
TEST_CASE("streamed token_bytes agree with SentencePiece's decode on random sequences") {
  const Tokenizer& tok = test::llama2_tokenizer();
  const auto& sp = reference_sp(kLlama2Model);
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> any_id(0, 31999), byte_id(3, 258), kind(0, 9);
  int compared = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<int32_t> ids = {1};
    const int n = 1 + trial % 12;
    for (int i = 0; i < n; ++i) {
      const int k = kind(rng);
      ids.push_back(k < 5 ? any_id(rng) : k < 9 ? byte_id(rng) : (k % 2 ? 2 : 0));
    }
    // SentencePiece keeps dropping leading spaces while its output is still empty (after BOS,
    // "▁" then "▁x", or "</s>" then "▁x", lose both); streaming drops only the space right
    // after BOS, as llama2.c does. Skip that corner.
    if (ids[1] == 29871 || ids[1] == 2) continue;
    StreamDecoder dec(tok);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = dec.push(id);
      CHECK(test::is_valid_utf8(piece));
      streamed += piece;
    }
    streamed += dec.flush();
    CAPTURE(trial);
    CHECK(streamed == sp_decode(sp, ids));
    CHECK(tok.decode(ids) == sp_decode(sp, ids));
    ++compared;
  }
  CHECK(compared > 1700);
}

}  // namespace
}  // namespace sbits
