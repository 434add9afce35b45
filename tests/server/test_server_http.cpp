// sbits-server over real HTTP on 127.0.0.1: endpoints and response shapes, every error case of
// issue 7 with its status, stop strings, logprobs, API keys, CORS, a full queue, timeouts.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include "tests/server/server_process.h"
#include "tests/test_data.h"

namespace {

using namespace sbits::test;
using json = nlohmann::json;

const char* kStories = "stories260K.sbits";
const char* kTech = "tech-llama-58m-bf16.sbits";

httplib::Result post(const ServerProcess& s, const std::string& path, const std::string& body,
                     const httplib::Headers& headers = {}) {
  return s.client().Post(path.c_str(), headers, body, "application/json");
}

json post_json(const ServerProcess& s, const std::string& path, const json& body, int expect_status = 200) {
  auto res = post(s, path, body.dump());
  REQUIRE(res);
  CHECK_MESSAGE(res->status == expect_status, res->body);
  return json::parse(res->body);
}

void check_error(const httplib::Result& res, int status, const std::string& code, const std::string& message_part) {
  REQUIRE(res);
  CHECK(res->status == status);
  CHECK(res->get_header_value("Content-Type") == "application/json");
  const json j = json::parse(res->body, nullptr, false);
  REQUIRE_MESSAGE(j.is_object(), res->body);
  REQUIRE(j.contains("error"));
  CHECK(j["error"]["code"] == code);
  CHECK(j["error"]["type"].is_string());
  CHECK_MESSAGE(j["error"]["message"].get<std::string>().find(message_part) != std::string::npos, j.dump());
}

// A streaming request on its own connection; the receiver sees each piece of the body.
httplib::Result post_stream(const ServerProcess& s, const std::string& path, const json& body,
                            std::function<bool(const std::string&)> on_data) {
  httplib::Client c = s.client();
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) { return on_data(std::string(data, n)); };
  return c.send(req);
}

bool wait_for_metric(const ServerProcess& s, const std::string& name, double value, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (fetch_metric(s, name) == value) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace

TEST_CASE("health, models, completions and chat: OpenAI's shapes") {
  ServerProcess s(server_test_model(kStories), {"--parallel", "2"});
  auto health = s.client().Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(json::parse(health->body)["status"] == "ok");

  auto models = s.client().Get("/v1/models");
  REQUIRE(models);
  const json m = json::parse(models->body);
  CHECK(m["object"] == "list");
  CHECK(m["data"][0]["id"] == "stories260K");
  CHECK(m["data"][0]["object"] == "model");

  const json c = post_json(s, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 20}, {"temperature", 0}});
  CHECK(c["object"] == "text_completion");
  CHECK(c["id"].get<std::string>().rfind("cmpl-", 0) == 0);
  CHECK(c["model"] == "stories260K");
  CHECK(c["choices"][0]["text"].get<std::string>().size() > 10);
  CHECK(c["choices"][0]["finish_reason"] == "length");
  CHECK(c["usage"]["completion_tokens"] == 20);
  CHECK(c["usage"]["total_tokens"] == c["usage"]["prompt_tokens"].get<int>() + 20);

  const json chat = post_json(s, "/v1/chat/completions",
                              {{"model", "stories260K"},
                               {"messages", {{{"role", "system"}, {"content", "Tell a story."}}, {{"role", "user"}, {"content", "Lily"}}}},
                               {"max_tokens", 12},
                               {"temperature", 0}});
  CHECK(chat["object"] == "chat.completion");
  CHECK(chat["choices"][0]["message"]["role"] == "assistant");
  CHECK(chat["choices"][0]["message"]["content"].is_string());
  CHECK(chat["usage"]["completion_tokens"].get<int>() <= 12);

  std::string body;
  auto res = post_stream(s, "/v1/chat/completions",
                         {{"messages", {{{"role", "system"}, {"content", "Tell a story."}}, {{"role", "user"}, {"content", "Lily"}}}},
                          {"max_tokens", 12}, {"temperature", 0},
                          {"stream", true}, {"stream_options", {{"include_usage", true}}}},
                         [&](const std::string& d) { body += d; return true; });
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == "text/event-stream");
  const StreamResult sr = parse_sse(body);
  CHECK(sr.done);
  CHECK(body.substr(body.size() - 14) == "data: [DONE]\n\n");
  REQUIRE(sr.events.size() >= 3);
  CHECK(sr.events.front()["choices"][0]["delta"]["role"] == "assistant");
  const json& usage = sr.events.back();  // include_usage: choices [] and the usage, last
  CHECK(usage["choices"].empty());
  CHECK(usage["usage"]["completion_tokens"] == chat["usage"]["completion_tokens"]);
  const json& fin = sr.events[sr.events.size() - 2];
  CHECK(fin["choices"][0]["finish_reason"] == chat["choices"][0]["finish_reason"]);
  for (const json& e : sr.events) {
    CHECK(e["object"] == "chat.completion.chunk");
    CHECK(e["id"] == sr.events[0]["id"]);
  }
  CHECK(sr.text == chat["choices"][0]["message"]["content"]);  // streamed == whole
  CHECK(s.stop() == 0);
}

TEST_CASE("every error case answers OpenAI's error shape with the right status") {
  ServerProcess s(server_test_model(kStories), {"--parallel", "2", "--ctx", "128"});
  const std::string hi = R"("messages":[{"role":"user","content":"hi"}])";
  check_error(post(s, "/v1/chat/completions", "{not json"), 400, "invalid_json", "malformed JSON");
  check_error(post(s, "/v1/chat/completions", "[]"), 400, "invalid_json", "must be a JSON object");
  check_error(post(s, "/v1/chat/completions", "{" + hi + R"(,"temperature":"hot"})"), 400, "invalid_type",
              "'temperature' must be a number, got string");
  check_error(post(s, "/v1/chat/completions", "{" + hi + R"(,"max_tokens":"5"})"), 400, "invalid_type",
              "'max_tokens' must be an integer, got string");
  check_error(post(s, "/v1/completions", R"({"prompt":5})"), 400, "invalid_type", "'prompt' must be");
  check_error(post(s, "/v1/chat/completions", R"({"messages":[]})"), 400, "invalid_value", "at least one message");
  check_error(post(s, "/v1/chat/completions", R"({"messages":[{"role":"user","content":""}],"n":2})"), 400,
              "unsupported_parameter", "'n' must be 1");
  const std::string long_prompt(2000, 'a');
  check_error(post(s, "/v1/completions", json{{"prompt", long_prompt}}.dump()), 400, "context_length_exceeded",
              "the context holds 128");
  check_error(post(s, "/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", long_prompt}}}}}.dump()),
              400, "context_length_exceeded", "shorten the prompt");
  check_error(post(s, "/v1/completions", R"({"prompt":[1, 99999]})"), 400, "invalid_value", "outside the vocabulary");
  check_error(post(s, "/v1/chat/completions", "{" + hi + R"(,"model":"gpt-4o"})"), 404, "model_not_found", "gpt-4o");
  check_error(s.client().Get("/v1/nothing"), 404, "not_found", "/v1/nothing");
  check_error(post(s, "/v2/chat/completions", "{}"), 404, "not_found", "no route");
  check_error(s.client().Get("/v1/chat/completions"), 405, "method_not_allowed", "GET");
  check_error(post(s, "/detokenize", R"({"tokens":[100000]})"), 400, "invalid_request", "outside the vocabulary");
  // 413: the default limit is 8 MiB.
  check_error(post(s, "/v1/completions", std::string((8u << 20) + 1, ' ')), 413, "payload_too_large", "8388608");
  // Unknown fields are ignored, as OpenAI does.
  auto ok = post(s, "/v1/chat/completions", "{" + hi + R"(,"max_tokens":2,"frobnicate":{"x":1},"user":"u"})");
  REQUIRE(ok);
  CHECK(ok->status == 200);
  // Nothing above crashed the server or kept a slot.
  CHECK(fetch_metric(s, "sbits_slots_busy") == 0);
  CHECK(fetch_metric(s, "sbits_requests_failed_total") == 0);
  CHECK(s.client().Get("/health")->status == 200);
  CHECK(s.stop() == 0);
}

TEST_CASE("stop strings end the reply and are never emitted, even split across tokens") {
  ServerProcess s(server_test_model(kStories), {"--parallel", "2"});
  const json base = {{"prompt", "Once upon a time"}, {"max_tokens", 60}, {"temperature", 0}};
  const std::string full = post_json(s, "/v1/completions", base)["choices"][0]["text"];
  REQUIRE(full.size() > 40);
  // A stop string that starts mid-token and ends in a later token: "ere was a l" or so.
  const std::string stop = full.substr(8, 11);
  json with_stop = base;
  with_stop["stop"] = json::array({"zzzz", stop});
  const json r = post_json(s, "/v1/completions", with_stop);
  CHECK(r["choices"][0]["text"] == full.substr(0, full.find(stop)));
  CHECK(r["choices"][0]["finish_reason"] == "stop");

  with_stop["stream"] = true;
  std::string body;
  post_stream(s, "/v1/completions", with_stop, [&](const std::string& d) { body += d; return true; });
  const StreamResult sr = parse_sse(body);
  CHECK(sr.done);
  CHECK(sr.text == full.substr(0, full.find(stop)));
  CHECK(s.stop() == 0);
}

TEST_CASE("logprobs: chat's content list and the legacy arrays") {
  ServerProcess s(server_test_model(kStories), {"--parallel", "2"});
  const json chat = post_json(s, "/v1/chat/completions",
                              {{"messages", {{{"role", "user"}, {"content", "Tom"}}}},
                               {"max_tokens", 6},
                               {"temperature", 0},
                               {"logprobs", true},
                               {"top_logprobs", 3}});
  const json& content = chat["choices"][0]["logprobs"]["content"];
  REQUIRE(content.is_array());
  CHECK(content.size() == chat["usage"]["completion_tokens"].get<size_t>());
  std::string joined;
  for (const json& e : content) {
    CHECK(e["logprob"].get<double>() <= 0.0);
    CHECK(e["top_logprobs"].size() == 3);
    CHECK(e["top_logprobs"][0]["logprob"].get<double>() >= e["top_logprobs"][1]["logprob"].get<double>());
    CHECK(e["top_logprobs"][0]["token"] == e["token"]);  // greedy: the chosen token is the best
    joined += e["token"].get<std::string>();
  }
  CHECK(joined == chat["choices"][0]["message"]["content"]);

  const json text = post_json(s, "/v1/completions",
                              {{"prompt", "The cat"}, {"max_tokens", 5}, {"temperature", 0}, {"logprobs", 2}});
  const json& lp = text["choices"][0]["logprobs"];
  CHECK(lp["tokens"].size() == 5);
  CHECK(lp["token_logprobs"].size() == 5);
  CHECK(lp["top_logprobs"][0].size() == 2);
  CHECK(lp["text_offset"][0] == 0);
  CHECK(s.stop() == 0);
}

TEST_CASE("tokenize and detokenize round-trip") {
  ServerProcess s(server_test_model(kStories), {});
  const json t = post_json(s, "/tokenize", {{"content", "Hello world"}});
  REQUIRE(t["tokens"].size() > 1);
  const json d = post_json(s, "/detokenize", {{"tokens", t["tokens"]}});
  CHECK(d["content"] == "Hello world");
  const json bos = post_json(s, "/tokenize", {{"content", "Hi"}, {"add_special", true}, {"with_pieces", true}});
  CHECK(bos["tokens"][0]["id"] == 1);
  CHECK(bos["tokens"][0]["piece"] == "<s>");
  CHECK(s.stop() == 0);
}

TEST_CASE("API key: required on every route but /health, checked exactly") {
  const std::string key_file = temp_dir() + "/key";
  std::ofstream(key_file) << "s3cret-key\n";
  for (const std::vector<std::string>& args : {std::vector<std::string>{"--api-key", "s3cret-key"},
                                                std::vector<std::string>{"--api-key-file", key_file}}) {
    ServerProcess s(server_test_model(kStories), args);
    CHECK(s.client().Get("/health")->status == 200);
    check_error(s.client().Get("/v1/models"), 401, "invalid_api_key", "missing API key");
    check_error(s.client().Get("/v1/models", {{"Authorization", "Bearer s3cret-kez"}}), 401, "invalid_api_key", "invalid");
    check_error(s.client().Get("/v1/models", {{"Authorization", "Bearer s3cret-key2"}}), 401, "invalid_api_key", "invalid");
    check_error(s.client().Get("/metrics", {{"Authorization", "s3cret-key"}}), 401, "invalid_api_key", "Bearer");
    // The key is checked before the body is read.
    check_error(post(s, "/v1/completions", std::string(1 << 16, 'x')), 401, "invalid_api_key", "missing");
    CHECK(s.client().Get("/v1/models", {{"Authorization", "Bearer s3cret-key"}})->status == 200);
    auto ok = post(s, "/v1/completions", R"({"prompt":"a","max_tokens":2})", {{"Authorization", "Bearer s3cret-key"}});
    REQUIRE(ok);
    CHECK(ok->status == 200);
    CHECK(s.stop() == 0);
  }
  ServerProcess open(server_test_model(kStories), {});  // no key configured: none needed
  CHECK(open.client().Get("/v1/models")->status == 200);
  CHECK(open.client().Get("/v1/models", {{"Authorization", "Bearer anything"}})->status == 200);
}

TEST_CASE("CORS: allow-origin on answers, preflight without a key") {
  ServerProcess s(server_test_model(kStories), {"--cors-origin", "http://localhost:3000", "--api-key", "k"});
  auto pre = s.client().Options("/v1/chat/completions", {{"Origin", "http://localhost:3000"},
                                                         {"Access-Control-Request-Method", "POST"},
                                                         {"Access-Control-Request-Headers", "authorization, content-type"}});
  REQUIRE(pre);
  CHECK(pre->status == 204);
  CHECK(pre->get_header_value("Access-Control-Allow-Origin") == "http://localhost:3000");
  CHECK(pre->get_header_value("Access-Control-Allow-Headers") == "authorization, content-type");
  CHECK(pre->get_header_value("Access-Control-Allow-Methods").find("POST") != std::string::npos);
  auto denied = s.client().Get("/v1/models");
  REQUIRE(denied);
  CHECK(denied->status == 401);
  CHECK(denied->get_header_value("Access-Control-Allow-Origin") == "http://localhost:3000");
  CHECK(s.stop() == 0);
}

TEST_CASE("all slots busy and the queue full: 503 with Retry-After; the slot comes back") {
  ServerProcess s(server_test_model(kTech), {"--parallel", "1", "--max-queue", "0", "--ctx", "512"});
  std::promise<void> started;
  std::atomic<bool> stop_reading{false};
  bool first = true;
  auto stream = std::async(std::launch::async, [&] {
    return post_stream(s, "/v1/completions",
                       {{"prompt", "The kernel"}, {"max_tokens", 400}, {"temperature", 0}, {"stream", true}},
                       [&](const std::string&) {
                         if (first) started.set_value();
                         first = false;
                         return !stop_reading.load();
                       });
  });
  REQUIRE(started.get_future().wait_for(std::chrono::seconds(60)) == std::future_status::ready);
  CHECK(fetch_metric(s, "sbits_slots_busy") == 1);
  auto busy = post(s, "/v1/completions", R"({"prompt":"x","max_tokens":1})");
  check_error(busy, 503, "server_overloaded", "queue is full");
  CHECK(busy->get_header_value("Retry-After") == "1");
  CHECK(fetch_metric(s, "sbits_requests_rejected_total") == 1);
  stop_reading = true;  // the client hangs up: its generation stops and the slot is free
  stream.wait();
  CHECK(wait_for_metric(s, "sbits_slots_busy", 0, 30));
  auto again = post(s, "/v1/completions", R"({"prompt":"x","max_tokens":1})");
  REQUIRE(again);
  CHECK(again->status == 200);
  CHECK(s.stop() == 0);
}

TEST_CASE("--timeout ends a request: 504, or an error event in a stream") {
  ServerProcess s(server_test_model(kTech), {"--parallel", "1", "--timeout", "1", "--ctx", "1024"});
  // Greedy: tech-llama-58m continues "The kernel" for 1000 tokens without an end-of-sequence
  // token (8 s on the 2-core build machine); a sampled reply could end early and return 200.
  check_error(post(s, "/v1/completions", R"({"prompt":"The kernel","max_tokens":1000,"temperature":0})"), 504,
              "timeout", "--timeout");
  std::string body;
  post_stream(s, "/v1/completions",
              {{"prompt", "The kernel"}, {"max_tokens", 1000}, {"temperature", 0}, {"stream", true}},
              [&](const std::string& d) { body += d; return true; });
  const StreamResult sr = parse_sse(body);
  CHECK(sr.done);
  REQUIRE_FALSE(sr.events.empty());
  CHECK(sr.events.back()["error"]["code"] == "timeout");
  CHECK(fetch_metric(s, "sbits_requests_timed_out_total") == 2);
  CHECK(fetch_metric(s, "sbits_slots_busy") == 0);
  CHECK(s.stop() == 0);
}

TEST_CASE("SIGTERM ends streams in flight with an error event and [DONE], then exits 0") {
  ServerProcess s(server_test_model(kTech), {"--parallel", "2", "--ctx", "1024"});
  std::promise<void> started;
  bool first = true;
  std::string body;
  auto stream = std::async(std::launch::async, [&] {
    return post_stream(s, "/v1/completions",
                       {{"prompt", "The kernel"}, {"max_tokens", 900}, {"temperature", 0}, {"stream", true}},
                       [&](const std::string& d) {
                         body += d;
                         if (first) started.set_value();
                         first = false;
                         return true;
                       });
  });
  REQUIRE(started.get_future().wait_for(std::chrono::seconds(60)) == std::future_status::ready);
  CHECK(s.stop() == 0);
  stream.wait();
  const StreamResult sr = parse_sse(body);
  CHECK(sr.done);
  REQUIRE_FALSE(sr.events.empty());
  CHECK(sr.events.back()["error"]["message"] == "the server is shutting down");
}
