// Bad model bytes: every kind of corruption gives TokenizerError (or, for a mutation that
// still parses, a tokenizer that works), never a crash. Run under ASan/UBSan too.
#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "tests/engine/text/text_test_util.h"

namespace sbits {
namespace {

using test::data_path;

std::vector<uint8_t> bytes_of(std::initializer_list<uint32_t> words, std::string tail = {}) {
  std::vector<uint8_t> out;
  for (uint32_t w : words)
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(w >> (8 * i)));
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

void flip_bits(std::vector<uint8_t>& bytes, int n, std::mt19937& rng) {
  for (int i = 0; i < n; ++i) bytes[rng() % bytes.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
}

// A tokenizer that loaded from mutated bytes must still behave on any input.
void exercise(const Tokenizer& tok) {
  for (const char* text : {"Hello world", "", "\xF0\x9F\xA6\x99 <s> \xFF", "a</s>b<unk>"}) {
    auto ids = tok.encode(text, true);
    auto ids2 = tok.encode_with_specials(text, true);
    for (int32_t id : ids) REQUIRE((id >= 0 && id < tok.vocab_size()));
    for (int32_t id : ids2) REQUIRE((id >= 0 && id < tok.vocab_size()));
    (void)tok.decode(ids);
    StreamDecoder dec(tok);
    for (int32_t id : ids) (void)dec.push(id);
    (void)dec.flush();
  }
}

TEST_CASE("unknown tokenizer kind") {
  CHECK_THROWS_WITH_AS(Tokenizer::create("bpe", {}, -1, -1), doctest::Contains("unknown tokenizer kind 'bpe'"),
                       TokenizerError);
}

TEST_CASE("llama2c: each kind of corruption is a TokenizerError naming the problem") {
  using doctest::Contains;
  const auto create = [](const std::vector<uint8_t>& b) { return Tokenizer::create("llama2c", b, -1, -1); };
  CHECK_THROWS_WITH_AS(create({}), Contains("truncated header"), TokenizerError);
  CHECK_THROWS_WITH_AS(create({1, 0, 0}), Contains("truncated header"), TokenizerError);
  CHECK_THROWS_WITH_AS(create(bytes_of({4})), Contains("no tokens"), TokenizerError);
  CHECK_THROWS_WITH_AS(create(bytes_of({0})), Contains("max_token_length is 0"), TokenizerError);
  CHECK_THROWS_WITH_AS(create(bytes_of({0xFFFFFFFF})), Contains("max_token_length is -1"), TokenizerError);
  CHECK_THROWS_WITH_AS(create(bytes_of({4, 0})), Contains("truncated token entry"), TokenizerError);
  CHECK_THROWS_WITH_AS(create(bytes_of({4, 0, 0xFFFFFFFF})), Contains("has length -1"), TokenizerError);
  CHECK_THROWS_WITH_AS(create(bytes_of({4, 0, 5}, "abcde")), Contains("has length 5, expected 0..4"),
                       TokenizerError);
  CHECK_THROWS_WITH_AS(create(bytes_of({4, 0, 3}, "ab")), Contains("truncated token piece at offset 12"),
                       TokenizerError);
  // Valid file, bad special ids.
  const auto ok = bytes_of({4, 0, 1}, "a");
  CHECK(Tokenizer::create("llama2c", ok, -1, -1)->vocab_size() == 1);
  CHECK_THROWS_WITH_AS(Tokenizer::create("llama2c", ok, 1, -1), Contains("bos_id 1 is outside"), TokenizerError);
  CHECK_THROWS_WITH_AS(Tokenizer::create("llama2c", ok, 0, -2), Contains("eos_id -2"), TokenizerError);
}

TEST_CASE("llama2c: truncations and bit flips of tok512.bin") {
  const auto good = test::read_bytes(data_path("models/tok512.bin"));
  for (size_t len = 0; len < good.size(); len += 97) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<ptrdiff_t>(len));
    try {
      exercise(*Tokenizer::create("llama2c", cut, -1, -1));  // a cut between entries is a smaller vocab
    } catch (const TokenizerError&) {
    }
  }
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    auto bad = good;
    flip_bits(bad, 1 + trial % 4, rng);
    try {
      exercise(*Tokenizer::create("llama2c", bad, -1, -1));
    } catch (const TokenizerError&) {
    }
  }
}

TEST_CASE("sentencepiece: garbage, truncations and bit flips") {
  using doctest::Contains;
  CHECK_THROWS_WITH_AS(Tokenizer::create("sentencepiece", {}, -1, -1), Contains("empty"), TokenizerError);
  const std::vector<uint8_t> garbage = {0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00, 0x12};
  CHECK_THROWS_AS(Tokenizer::create("sentencepiece", garbage, -1, -1), TokenizerError);
  // A llama2.c file is not a ModelProto.
  CHECK_THROWS_AS(Tokenizer::create("sentencepiece", test::read_bytes(data_path("models/tok512.bin")), -1, -1),
                  TokenizerError);

  const auto good = test::read_bytes(data_path("models/tok512.model"));
  CHECK_THROWS_WITH_AS(Tokenizer::create("sentencepiece", good, 512, -1), Contains("bos_id 512 is outside"),
                       TokenizerError);
  size_t loaded = 0, rejected = 0;
  for (size_t len = 1; len < good.size(); len += 211) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<ptrdiff_t>(len));
    try {
      exercise(*Tokenizer::create("sentencepiece", cut, -1, -1));
      ++loaded;
    } catch (const TokenizerError&) {
      ++rejected;
    }
  }
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    auto bad = good;
    flip_bits(bad, 1 + trial % 4, rng);
    try {
      exercise(*Tokenizer::create("sentencepiece", bad, -1, -1));
      ++loaded;
    } catch (const TokenizerError&) {
      ++rejected;
    }
  }
  MESSAGE("mutated SentencePiece models: " << loaded << " still load, " << rejected << " rejected");
  CHECK(rejected > 0);
}

}  // namespace
}  // namespace sbits
