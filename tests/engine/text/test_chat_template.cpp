// Chat templates: the built-ins render exactly the canonical strings; the custom format
// parses, round-trips and rejects bad input with the line number.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "engine/text/chat_template.h"
#include "tests/engine/text/text_test_util.h"

namespace sbits {
namespace {

using doctest::Contains;

const std::vector<ChatMessage> kConversation = {
    {"system", "You are terse."},
    {"user", "Hi!"},
    {"assistant", "Hello."},
    {"user", "What is 2+2?"},
};

std::string render(const std::string& spec, bool gen = true, const std::vector<ChatMessage>& m = kConversation) {
  return ChatTemplate::from_spec(spec).render(m, gen);
}

TEST_CASE("built-in names") {
  CHECK(ChatTemplate::builtin_names() == std::vector<std::string>{"llama2", "chatml", "zephyr", "plain"});
  for (const auto& name : ChatTemplate::builtin_names()) CHECK(ChatTemplate::from_spec(name).name() == name);
}

TEST_CASE("llama2 renders as Llama-2-chat-hf's template") {
  CHECK(render("llama2") ==
        "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] What is 2+2? [/INST]");
  // Without a system message, and with content that the template strips.
  CHECK(render("llama2", true, {{"user", "  Hi!\n"}}) == "<s>[INST] Hi! [/INST]");
  CHECK(render("llama2", false, {{"user", "Hi!"}, {"assistant", " Hello. "}}) == "<s>[INST] Hi! [/INST] Hello. </s>");
  CHECK(ChatTemplate::from_spec("llama2").stop_strings() == std::vector<std::string>{"</s>", "[INST]"});
}

TEST_CASE("chatml") {
  CHECK(render("chatml") ==
        "<s><|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n");
  CHECK(render("chatml", false, {{"user", " x "}}) == "<s><|im_start|>user\n x <|im_end|>\n");
  CHECK(ChatTemplate::from_spec("chatml").stop_strings() == std::vector<std::string>{"<|im_end|>", "<|im_start|>"});
}

TEST_CASE("zephyr") {
  CHECK(render("zephyr") ==
        "<s><|system|>\nYou are terse.</s>\n<|user|>\nHi!</s>\n<|assistant|>\nHello.</s>\n"
        "<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n");
  CHECK(ChatTemplate::from_spec("zephyr").stop_strings() == std::vector<std::string>{"</s>", "<|user|>"});
}

TEST_CASE("plain") {
  CHECK(render("plain") == "<s>System: You are terse.\nUser: Hi!\nAssistant: Hello.\nUser: What is 2+2?\nAssistant:");
  CHECK(render("plain", false) == "<s>System: You are terse.\nUser: Hi!\nAssistant: Hello.\nUser: What is 2+2?\n");
  CHECK(ChatTemplate::from_spec("plain").stop_strings() == std::vector<std::string>{"\nUser:", "\nSystem:"});
}

TEST_CASE("render rejects an empty list and unknown roles") {
  const auto t = ChatTemplate::from_spec("chatml");
  CHECK_THROWS_WITH_AS(t.render({}, true), Contains("no messages"), std::invalid_argument);
  const std::vector<ChatMessage> m = {{"user", "a"}, {"tool", "b"}};
  CHECK_THROWS_WITH_AS(t.render(m, true), Contains("message 1 has unknown role 'tool'"), std::invalid_argument);
}

TEST_CASE("unknown spec names the spec and lists the built-ins") {
  CHECK_THROWS_WITH_AS(ChatTemplate::from_spec("vicuna"), Contains("'vicuna'"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ChatTemplate::from_spec("vicuna"), Contains("llama2, chatml, zephyr, plain"),
                       std::invalid_argument);
  CHECK_THROWS_AS(ChatTemplate::from_spec(""), std::invalid_argument);
}

TEST_CASE("a custom template") {
  const std::string spec =
      "# Alpaca-style\r\n"
      "version = 1\r\n"
      "name = alpaca\n"
      "\n"
      "bos = <s>\n"
      "system_prefix =   \n"
      "system_suffix = \\n\\n\n"
      "user_prefix = \"### Instruction:\\n\"\n"
      "user_suffix = \"\\n\\n\"\n"
      "assistant_prefix = \"### Response:\\n\"\n"
      "assistant_suffix = \"\\n\\n\"\n"
      "  stop = ### Instruction:\n"
      "stop = \"say \\\"bye\\\" \\\\ \"\n";
  const auto t = ChatTemplate::from_spec(spec);
  CHECK(t.name() == "alpaca");
  CHECK(t.stop_strings() == std::vector<std::string>{"### Instruction:", "say \"bye\" \\ "});
  const std::vector<ChatMessage> m = {{"system", "Be brief."}, {"user", "Hi"}};
  // generation_prompt defaults to assistant_prefix.
  CHECK(t.render(m, true) == "<s>Be brief.\n\n### Instruction:\nHi\n\n### Response:\n");
  // Round trip through to_text.
  const auto again = ChatTemplate::from_spec(t.to_text());
  CHECK(again.render(m, true) == t.render(m, true));
  CHECK(again.stop_strings() == t.stop_strings());
  CHECK(again.name() == "alpaca");
  // Minimal: just the version.
  const auto bare = ChatTemplate::from_spec("version = 1");
  CHECK(bare.name() == "custom");
  CHECK(bare.render(m, true) == "Be brief.Hi");
}

TEST_CASE("built-ins round-trip through to_text") {
  for (const auto& name : ChatTemplate::builtin_names()) {
    const auto t = ChatTemplate::from_spec(name);
    const auto again = ChatTemplate::from_spec(t.to_text());
    CAPTURE(name);
    CHECK(again.render(kConversation, true) == t.render(kConversation, true));
    CHECK(again.render(kConversation, false) == t.render(kConversation, false));
    CHECK(again.stop_strings() == t.stop_strings());
  }
}

TEST_CASE("custom template errors name the line") {
  const auto err = [](const std::string& spec, const char* what) {
    CAPTURE(spec);
    CHECK_THROWS_WITH_AS(ChatTemplate::from_spec(spec), Contains(what), std::invalid_argument);
  };
  err("name = x\n", "the first key must be 'version = 1'");
  err("# nothing\nbos = <s>\n", "line 2: the first key must be 'version = 1'");
  err("\n# only comments\n", "missing 'version = 1'");
  err("version = 2\n", "line 1: unsupported version '2'");
  err("version = 1\nuser_prefx = a\n", "line 2: unknown key 'user_prefx'");
  err("version = 1\nbos = a\nbos = b\n", "line 3: duplicate key 'bos'");
  err("version = 1\nversion = 1\n", "duplicate key 'version'");
  err("version = 1\nbos\n", "line 2: expected 'key = value'");
  err("version = 1\nbos = \"<s>\n", "line 2: unterminated quoted value");
  err("version = 1\nbos = \"<s>\\\"\n", "unterminated quoted value");
  err("version = 1\nbos = \"a\"b\"\n", "must be written \\\"");
  err("version = 1\nbos = a\\qb\n", "line 2: unknown escape '\\q'");
  err("version = 1\nbos = a\\\n", "lone '\\'");
  err("version = 1\ntrim_content = yes\n", "trim_content must be true or false");
  err("version = 1\nstop = \"\"\n", "empty stop string");
  err("version = 1\nname =\n", "name must not be empty");
}

TEST_CASE("llama2 prompt tokens, as Meta's code and Hugging Face produce them") {
  const Tokenizer& tok = test::llama2_tokenizer();
  const auto ids = tok.encode_with_specials(render("llama2"), false);
  const std::vector<int32_t> head = {1, 518, 25580, 29962, 3532, 14816, 29903, 6778, 13};
  REQUIRE(ids.size() > head.size());
  CHECK(std::vector<int32_t>(ids.begin(), ids.begin() + 9) == head);
  // The second turn starts with </s><s> and "▁[INST]" again.
  size_t eos = 0;
  while (eos < ids.size() && ids[eos] != 2) ++eos;
  REQUIRE(eos + 4 < ids.size());
  const auto at = ids.begin() + static_cast<ptrdiff_t>(eos);
  CHECK(std::vector<int32_t>(at, at + 5) == std::vector<int32_t>{2, 1, 518, 25580, 29962});
}

// CHAT_TEMPLATES.md shows every built-in; this keeps the document from drifting.
TEST_CASE("CHAT_TEMPLATES.md shows each built-in exactly") {
  std::ifstream in(std::string(SBITS_SOURCE_DIR) + "/engine/text/CHAT_TEMPLATES.md");
  REQUIRE(in);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  for (const auto& name : ChatTemplate::builtin_names()) {
    // The block after "```text built-in: NAME" up to the closing fence.
    const std::string open = "```text\n# built-in: " + name + "\n";
    const size_t at = doc.find(open);
    CAPTURE(name);
    REQUIRE(at != std::string::npos);
    const size_t start = at + 8;  // keep the "# built-in" line: it is a comment
    const size_t end = doc.find("```", start);
    REQUIRE(end != std::string::npos);
    const auto shown = ChatTemplate::from_spec(doc.substr(start, end - start));
    const auto real = ChatTemplate::from_spec(name);
    CHECK(shown.to_text() == real.to_text());
  }
}

}  // namespace
}  // namespace sbits
