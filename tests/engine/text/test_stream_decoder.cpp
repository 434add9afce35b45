// StreamDecoder: characters split across byte tokens come out whole, ill-formed bytes become
// U+FFFD as soon as they are known to be ill-formed, flush() ends what is pending.
#include <doctest/doctest.h>

#include <random>

#include "tests/engine/text/text_test_util.h"

namespace sbits {
namespace {

constexpr int32_t kBos = 1;
constexpr const char* kFFFD = "\xEF\xBF\xBD";
int32_t byte_token(uint8_t b) { return 3 + b; }  // Llama 2: <0x00> is id 3

// Pushes BOS then ids; returns each push's output.
std::vector<std::string> stream(const Tokenizer& tok, const std::vector<int32_t>& ids, std::string* flushed) {
  StreamDecoder dec(tok);
  CHECK(dec.push(kBos).empty());
  std::vector<std::string> outs;
  for (int32_t id : ids) {
    outs.push_back(dec.push(id));
    CHECK(test::is_valid_utf8(outs.back()));
  }
  *flushed = dec.flush();
  return outs;
}

std::string joined(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += p;
  return s;
}

TEST_CASE("multi-byte characters split across byte tokens") {
  const Tokenizer& tok = test::llama2_tokenizer();
  for (const std::string text :
       {"\xF0\x9F\xA6\x99", "\xC3\x84pfel", "Здравей, свят! Как си?", "这是一个测试 🦙🦙", "ied 4 ½ months", "ខ្មែរ"}) {
    CAPTURE(text);
    const auto ids = tok.encode(text, false);
    std::string rest;
    const auto outs = stream(tok, ids, &rest);
    CHECK(rest.empty());
    CHECK(joined(outs) == text);  // the dummy-prefix space is dropped after BOS
    CHECK(joined(outs) == tok.decode(ids));
  }
}

TEST_CASE("the llama emoji comes out only when its fourth byte arrives") {
  const Tokenizer& tok = test::llama2_tokenizer();
  const std::vector<int32_t> ids = {29871, byte_token(0xF0), byte_token(0x9F), byte_token(0xA6), byte_token(0x99)};
  CHECK(tok.encode("\xF0\x9F\xA6\x99", false) == ids);
  std::string rest;
  const auto outs = stream(tok, ids, &rest);
  CHECK(outs == std::vector<std::string>{"", "", "", "", "\xF0\x9F\xA6\x99"});
  CHECK(rest.empty());
}

TEST_CASE("ill-formed bytes become U+FFFD, one per byte, as soon as they cannot complete") {
  const Tokenizer& tok = test::llama2_tokenizer();
  std::string rest;
  // A lone continuation byte is ill-formed at once.
  auto outs = stream(tok, {byte_token(0x80), 29874 /* "a" */}, &rest);
  CHECK(outs == std::vector<std::string>{kFFFD, "a"});
  // E2 82 then a word: the first two bytes of "€" never complete.
  outs = stream(tok, {byte_token(0xE2), byte_token(0x82), 29874}, &rest);
  CHECK(outs == std::vector<std::string>{"", "", std::string(kFFFD) + kFFFD + "a"});
  // E2 then 41: known bad at the second byte.
  outs = stream(tok, {byte_token(0xE2), byte_token(0x41)}, &rest);
  CHECK(outs == std::vector<std::string>{"", std::string(kFFFD) + "A"});
  // Overlong (C0 80), surrogate (ED A0 80) and beyond U+10FFFF (F4 90 80 80).
  outs = stream(tok, {byte_token(0xC0), byte_token(0x80)}, &rest);
  CHECK(joined(outs) == std::string(kFFFD) + kFFFD);
  outs = stream(tok, {byte_token(0xED), byte_token(0xA0), byte_token(0x80)}, &rest);
  CHECK(joined(outs) == std::string(kFFFD) + kFFFD + kFFFD);
  outs = stream(tok, {byte_token(0xF4), byte_token(0x90)}, &rest);
  CHECK(joined(outs) == std::string(kFFFD) + kFFFD);
  CHECK(rest.empty());
}

TEST_CASE("flush ends a pending character; control tokens interrupt one") {
  const Tokenizer& tok = test::llama2_tokenizer();
  std::string rest;
  auto outs = stream(tok, {byte_token(0xF0), byte_token(0x9F), byte_token(0xA6)}, &rest);
  CHECK(joined(outs).empty());
  CHECK(rest == std::string(kFFFD) + kFFFD + kFFFD);

  // As in SentencePiece's decode, a control token between the bytes leaves the character
  // unfinished.
  outs = stream(tok, {byte_token(0xC3), 2, byte_token(0x84)}, &rest);
  CHECK(joined(outs) == std::string(kFFFD) + kFFFD);
  const std::vector<int32_t> seq = {kBos, byte_token(0xC3), 2, byte_token(0x84)};
  CHECK(tok.decode(seq) == std::string(kFFFD) + kFFFD);

  // flush() on an empty decoder, twice, and after reset().
  StreamDecoder dec(tok);
  CHECK(dec.flush().empty());
  CHECK(dec.push(byte_token(0xC3)).empty());
  dec.reset();
  CHECK(dec.flush().empty());
  CHECK(dec.push(15043) == " Hello");  // after reset nothing came before: the space stays
  CHECK(dec.push(kBos).empty());
  CHECK(dec.push(15043) == "Hello");
}

TEST_CASE("random byte soup never yields ill-formed UTF-8 and matches SentencePiece") {
  const Tokenizer& tok = test::llama2_tokenizer();
  const auto& sp = test::reference_sp("tokenizers/llama2_tokenizer.model");
  std::mt19937 rng(99);
  // Mostly bytes that start or continue multi-byte characters, so that splits are common.
  const uint8_t interesting[] = {0x41, 0x80, 0x9F, 0xA6, 0xBF, 0xC2, 0xC3, 0xE2, 0xED, 0xF0, 0xF4, 0xF5, 0xFF};
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<int32_t> ids = {kBos};
    for (int i = 0; i < 1 + trial % 9; ++i) {
      const uint32_t r = rng();
      const uint8_t b = r % 7 == 0 ? static_cast<uint8_t>(rng()) : interesting[r % std::size(interesting)];
      ids.push_back(byte_token(b));
    }
    std::string rest;
    std::vector<int32_t> tail(ids.begin() + 1, ids.end());
    const auto outs = stream(tok, tail, &rest);
    CHECK(test::is_valid_utf8(rest));
    CAPTURE(trial);
    CHECK(joined(outs) + rest == test::sp_decode(sp, ids));
  }
}

}  // namespace
}  // namespace sbits
