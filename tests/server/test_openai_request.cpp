// Request parsing and response shapes, without a server: every wrong type and unsupported
// feature is a 400 that names the field, unknown fields are ignored, and the JSON we send
// has OpenAI's shapes.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "server/http_server.h"
#include "server/openai_request.h"
#include "server/openai_response.h"

namespace {

using namespace sbits::server;
using json = nlohmann::json;

const std::string kHi = R"("messages":[{"role":"user","content":"hi"}])";

CompletionRequest chat_ok(const std::string& extra) {
  auto r = parse_chat_request("{" + kHi + (extra.empty() ? "" : "," + extra) + "}");
  if (auto* e = std::get_if<ApiError>(&r)) FAIL("unexpected error: " << e->message);
  return std::get<CompletionRequest>(r);
}

ApiError chat_error(const std::string& body) {
  auto r = parse_chat_request(body);
  REQUIRE_MESSAGE(std::holds_alternative<ApiError>(r), "expected an error for " << body);
  return std::get<ApiError>(r);
}

ApiError completion_error(const std::string& body) {
  auto r = parse_completion_request(body);
  REQUIRE_MESSAGE(std::holds_alternative<ApiError>(r), "expected an error for " << body);
  return std::get<ApiError>(r);
}

}  // namespace

TEST_CASE("defaults follow OpenAI's, and unknown fields are ignored") {
  const CompletionRequest r = chat_ok(R"("frobnicate": {"x": [1, 2]}, "user": "u1", "metadata": null)");
  CHECK(r.endpoint == Endpoint::chat);
  CHECK(r.max_tokens == -1);
  CHECK(r.sampling.temperature == 1.0f);
  CHECK(r.sampling.top_p == 1.0f);
  CHECK(r.sampling.top_k == 0);
  CHECK(r.sampling.min_p == 0.0f);
  CHECK_FALSE(r.stream);
  CHECK(r.logprobs == -1);
  REQUIRE(r.messages.size() == 1);
  CHECK(r.messages[0].role == "user");
  CHECK(r.messages[0].content == "hi");

  auto c = parse_completion_request(R"({"prompt": "x"})");
  REQUIRE(std::holds_alternative<CompletionRequest>(c));
  CHECK(std::get<CompletionRequest>(c).max_tokens == 16);  // the legacy endpoint's default
}

TEST_CASE("every parameter is read") {
  const CompletionRequest r = chat_ok(
      R"("model":"m","max_tokens":7,"max_completion_tokens":9,"temperature":0,"top_p":0.5,"top_k":3,"min_p":0.1,)"
      R"("presence_penalty":0.5,"frequency_penalty":-0.5,"seed":-3,"stop":["a","b"],"stream":true,)"
      R"("stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":4,"n":1)");
  CHECK(r.model == "m");
  CHECK(r.max_tokens == 9);  // max_completion_tokens wins
  CHECK(r.sampling.temperature == 0.0f);
  CHECK(r.sampling.top_p == 0.5f);
  CHECK(r.sampling.top_k == 3);
  CHECK(r.sampling.min_p == doctest::Approx(0.1f));
  CHECK(r.sampling.presence_penalty == 0.5f);
  CHECK(r.sampling.frequency_penalty == -0.5f);
  CHECK(r.seed_given);
  CHECK(r.sampling.seed == static_cast<uint64_t>(int64_t(-3)));
  CHECK(r.stop == std::vector<std::string>{"a", "b"});
  CHECK(r.stream);
  CHECK(r.include_usage);
  CHECK(r.logprobs == 4);
  CHECK(chat_ok(R"("stop":"x")").stop == std::vector<std::string>{"x"});
  CHECK(chat_ok(R"("max_tokens": 5.0)").max_tokens == 5);  // integral floats from loose clients
  CHECK(chat_ok(R"("temperature": null)").sampling.temperature == 1.0f);  // null = absent
}

TEST_CASE("wrong types are 400s naming the field and the type found") {
  struct Case {
    std::string fields;
    std::string param;
    std::string message;
  };
  const std::vector<Case> cases = {
      {R"("temperature":"hot")", "temperature", "'temperature' must be a number, got string"},
      {R"("max_tokens":"10")", "max_tokens", "'max_tokens' must be an integer, got string"},
      {R"("max_tokens":1.5)", "max_tokens", "'max_tokens' must be an integer, got number"},
      {R"("stream":1)", "stream", "'stream' must be a boolean, got integer"},
      {R"("stop":5)", "stop", "'stop' must be a string or an array of strings, got integer"},
      {R"("stop":["a",3])", "stop[1]", "'stop[1]' must be a string, got integer"},
      {R"("seed":"x")", "seed", "'seed' must be an integer, got string"},
      {R"("top_k":[1])", "top_k", "'top_k' must be an integer, got array"},
      {R"("stream_options":true)", "stream_options", "'stream_options' must be an object, got boolean"},
      {R"("stream_options":{"include_usage":"yes"})", "stream_options.include_usage",
       "'stream_options.include_usage' must be a boolean, got string"},
      {R"("logprobs":1)", "logprobs", "'logprobs' must be a boolean, got integer"},
      {R"("model":42)", "model", "'model' must be a string, got integer"},
      {R"("n":"2")", "n", "'n' must be an integer, got string"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.fields);
    const ApiError e = chat_error("{" + kHi + "," + c.fields + "}");
    CHECK(e.kind == ErrorKind::invalid_request);
    CHECK(e.param == c.param);
    CHECK(e.message == c.message);
  }
  CHECK(chat_error(R"({"messages":"hi"})").message == "'messages' must be an array, got string");
  CHECK(chat_error(R"({"messages":[5]})").message == "'messages[0]' must be an object, got integer");
  CHECK(chat_error(R"({"messages":[{"role":"user","content":5}]})").message ==
        "'messages[0].content' must be a string or an array of content parts, got integer");
  CHECK(chat_error(R"({"messages":[{"role":7,"content":"x"}]})").message == "'messages[0].role' must be a string, got integer");
  CHECK(completion_error(R"({"prompt":{"a":1}})").param == "prompt");
  CHECK(completion_error(R"({"prompt":[1,"a"]})").message == "'prompt[1]' must be an integer, got string");
  CHECK(completion_error(R"({"prompt":"x","logprobs":true})").message == "'logprobs' must be an integer, got boolean");
}

TEST_CASE("bad values: malformed JSON, empty messages, ranges, roles") {
  CHECK(chat_error("{\"messages\": [").code == "invalid_json");
  CHECK(chat_error("").code == "invalid_json");
  CHECK(chat_error("[1,2]").message == "the request body must be a JSON object, got array");
  CHECK(chat_error("{}").message == "'messages' is required");
  CHECK(chat_error(R"({"messages":[]})").message == "'messages' must contain at least one message");
  CHECK(chat_error(R"({"messages":[{"role":"wizard","content":"x"}]})").param == "messages[0].role");
  CHECK(chat_error(R"({"messages":[{"role":"user"}]})").message == "'messages[0].content' is required");
  CHECK(chat_error("{" + kHi + R"(,"temperature":2.5})").message == "'temperature' must be in [0, 2], got 2.5");
  CHECK(chat_error("{" + kHi + R"(,"max_tokens":0})").param == "max_tokens");
  CHECK(chat_error("{" + kHi + R"(,"top_logprobs":2})").message == "'top_logprobs' needs 'logprobs': true");
  CHECK(chat_error("{" + kHi + R"(,"logprobs":true,"top_logprobs":21})").param == "top_logprobs");
  CHECK(completion_error(R"({"prompt":"x","logprobs":6})").param == "logprobs");
  CHECK(completion_error(R"({"max_tokens":3})").message == "'prompt' is required");
  CHECK(completion_error(R"({"prompt":[]})").param == "prompt");
}

TEST_CASE("features we do not implement are refused, not ignored") {
  const ApiError n = chat_error("{" + kHi + R"(,"n":3})");
  CHECK(n.param == "n");
  CHECK(n.code == "unsupported_parameter");
  CHECK(n.message.find("one choice per request") != std::string::npos);
  CHECK(chat_ok(R"("n":1)").messages.size() == 1);
  CHECK(chat_error("{" + kHi + R"(,"tools":[{"type":"function"}]})").param == "tools");
  CHECK(chat_error("{" + kHi + R"(,"logit_bias":{"50":10}})").param == "logit_bias");
  CHECK(chat_error("{" + kHi + R"(,"response_format":{"type":"json_object"}})").param == "response_format");
  CHECK(chat_error(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})").param == "messages[0].content[0].type");
  CHECK(completion_error(R"({"prompt":"x","echo":true})").param == "echo");
  CHECK(completion_error(R"({"prompt":"x","suffix":"y"})").param == "suffix");
  CHECK(completion_error(R"({"prompt":["a","b"]})").code == "unsupported_parameter");
  CHECK(completion_error(R"({"prompt":"x","best_of":2})").param == "best_of");
}

TEST_CASE("content parts, developer role, prompt forms") {
  auto r = parse_chat_request(
      R"({"messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":null}]})");
  REQUIRE(std::holds_alternative<CompletionRequest>(r));
  const auto& m = std::get<CompletionRequest>(r).messages;
  REQUIRE(m.size() == 3);
  CHECK(m[0].role == "system");
  CHECK(m[1].content == "ab");
  CHECK(m[2].content.empty());
  auto ids = parse_completion_request(R"({"prompt":[1, 2, 3]})");
  REQUIRE(std::holds_alternative<CompletionRequest>(ids));
  CHECK(*std::get<CompletionRequest>(ids).prompt_tokens == std::vector<int32_t>{1, 2, 3});
  auto one = parse_completion_request(R"({"prompt":["only"]})");
  REQUIRE(std::holds_alternative<CompletionRequest>(one));
  CHECK(std::get<CompletionRequest>(one).prompt == "only");
}

TEST_CASE("tokenize and detokenize bodies") {
  auto t = parse_tokenize_request(R"({"content":"x","add_special":true})");
  REQUIRE(std::holds_alternative<TokenizeRequest>(t));
  CHECK(std::get<TokenizeRequest>(t).add_special);
  CHECK(std::get<ApiError>(parse_tokenize_request(R"({"content":1})")).message == "'content' must be a string, got integer");
  CHECK(std::get<ApiError>(parse_detokenize_request(R"({"tokens":[1,-2]})")).param == "tokens[1]");
  CHECK(std::get<ApiError>(parse_detokenize_request(R"({"tokens":"1"})")).param == "tokens");
}

TEST_CASE("response shapes: chat.completion, chunks, text_completion, usage, errors") {
  const ResponseMeta chat{Endpoint::chat, "chatcmpl-1", 123, "m"};
  json body = json::parse(completion_body(chat, "Hello", "stop", {3, 2}, std::nullopt));
  CHECK(body["object"] == "chat.completion");
  CHECK(body["id"] == "chatcmpl-1");
  CHECK(body["created"] == 123);
  CHECK(body["choices"][0]["message"]["role"] == "assistant");
  CHECK(body["choices"][0]["message"]["content"] == "Hello");
  CHECK(body["choices"][0]["finish_reason"] == "stop");
  CHECK(body["choices"][0]["logprobs"].is_null());
  CHECK(body["usage"] == json{{"prompt_tokens", 3}, {"completion_tokens", 2}, {"total_tokens", 5}});

  const std::string first = chunk_event(chat, "", std::nullopt, {.first = true, .with_usage = true});
  REQUIRE(first.rfind("data: ", 0) == 0);
  REQUIRE(first.size() > 8);
  CHECK(first.substr(first.size() - 2) == "\n\n");
  json c = json::parse(first.substr(6));
  CHECK(c["object"] == "chat.completion.chunk");
  CHECK(c["choices"][0]["delta"] == json{{"role", "assistant"}, {"content", ""}});
  CHECK(c["choices"][0]["finish_reason"].is_null());
  CHECK(c.contains("usage"));
  CHECK(c["usage"].is_null());
  json last = json::parse(chunk_event(chat, "", std::nullopt, {.finish_reason = "length"}).substr(6));
  CHECK(last["choices"][0]["delta"] == json::object());
  CHECK(last["choices"][0]["finish_reason"] == "length");
  CHECK_FALSE(last.contains("usage"));
  json usage = json::parse(usage_event(chat, {4, 5}).substr(6));
  CHECK(usage["choices"] == json::array());
  CHECK(usage["usage"]["total_tokens"] == 9);

  const ResponseMeta text{Endpoint::completion, "cmpl-1", 1, "m"};
  std::vector<LogprobEntry> lp = {{" a", -0.5f, {{" a", -0.5f}, {" b", -1.5f}}}, {"\xE2\x96", -0.25f, {}}};
  json t = json::parse(completion_body(text, " a\xE2\x96", "length", {1, 2}, lp, 10));
  CHECK(t["object"] == "text_completion");
  CHECK(t["choices"][0]["logprobs"]["tokens"][0] == " a");
  CHECK(t["choices"][0]["logprobs"]["text_offset"] == json::array({10, 12}));
  CHECK(t["choices"][0]["logprobs"]["top_logprobs"][0][" b"] == -1.5);
  json cl = json::parse(completion_body(chat, "x", "stop", {1, 1}, lp));
  const json& entry = cl["choices"][0]["logprobs"]["content"][1];
  CHECK(entry["bytes"] == json::array({0xE2, 0x96}));  // exact bytes of half a character...
  CHECK(entry["token"] == "\xEF\xBF\xBD");  // ...while the string stays valid UTF-8

  json err = json::parse(error_json({ErrorKind::unauthorized, "no key", "", ""}));
  CHECK(err["error"]["message"] == "no key");
  CHECK(err["error"]["type"] == "authentication_error");
  CHECK(err["error"]["code"] == "invalid_api_key");
  CHECK(err["error"].contains("param"));
  CHECK(http_status(ErrorKind::unauthorized) == 401);
  CHECK(http_status(ErrorKind::overloaded) == 503);
  CHECK(error_response({ErrorKind::overloaded, "busy", "", ""}).headers.at(0).first == "Retry-After");
}

TEST_CASE("API keys compare in constant time and exactly") {
  CHECK(constant_time_equal("secret", "secret"));
  CHECK_FALSE(constant_time_equal("secret", "secreT"));
  CHECK_FALSE(constant_time_equal("secret", "secret2"));
  CHECK_FALSE(constant_time_equal("secret", "secre"));
  CHECK_FALSE(constant_time_equal("secret", ""));
  CHECK_FALSE(constant_time_equal("", "x"));
}
