#include "server/openai_response.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <random>

namespace sbits::server {
namespace {

using json = nlohmann::ordered_json;  // keys in OpenAI's order, for people reading replies

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

json byte_array(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

// Chat's layout: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}], "refusal": null}.
json chat_logprobs(const std::vector<LogprobEntry>& entries) {
  json content = json::array();
  for (const LogprobEntry& e : entries) {
    json top = json::array();
    for (const auto& a : e.top) top.push_back({{"token", a.token}, {"logprob", a.logprob}, {"bytes", byte_array(a.token)}});
    content.push_back({{"token", e.token}, {"logprob", e.logprob}, {"bytes", byte_array(e.token)}, {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

// The legacy completions layout: parallel arrays, top alternatives as {token: logprob} maps.
json legacy_logprobs(const std::vector<LogprobEntry>& entries, size_t text_offset) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  size_t offset = text_offset;
  for (const LogprobEntry& e : entries) {
    tokens.push_back(e.token);
    lps.push_back(e.logprob);
    json top = json::object();
    for (const auto& a : e.top) top[a.token] = a.logprob;
    tops.push_back(top);
    offsets.push_back(offset);
    offset += e.token.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json logprobs_json(Endpoint endpoint, const std::optional<std::vector<LogprobEntry>>& entries, size_t text_offset) {
  if (!entries) return nullptr;
  return endpoint == Endpoint::chat ? chat_logprobs(*entries) : legacy_logprobs(*entries, text_offset);
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json envelope(const ResponseMeta& meta, const char* object) {
  return {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model},
          {"system_fingerprint", nullptr}};
}

json finish_json(const std::string& reason) { return reason.empty() ? json(nullptr) : json(reason); }

}  // namespace

std::string new_response_id(Endpoint endpoint) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}{:08x}", endpoint == Endpoint::chat ? "chatcmpl-" : "cmpl-", rng(),
                     static_cast<uint32_t>(rng()));
}

std::string completion_body(const ResponseMeta& meta, const std::string& text, const std::string& finish_reason,
                            const Usage& usage, const std::optional<std::vector<LogprobEntry>>& logprobs,
                            size_t text_offset) {
  json choice;
  json body;
  if (meta.endpoint == Endpoint::chat) {
    body = envelope(meta, "chat.completion");
    choice = {{"index", 0},
              {"message", {{"role", "assistant"}, {"content", text}, {"refusal", nullptr}}},
              {"logprobs", logprobs_json(meta.endpoint, logprobs, 0)},
              {"finish_reason", finish_json(finish_reason)}};
  } else {
    body = envelope(meta, "text_completion");
    choice = {{"text", text},
              {"index", 0},
              {"logprobs", logprobs_json(meta.endpoint, logprobs, text_offset)},
              {"finish_reason", finish_json(finish_reason)}};
  }
  body["choices"] = json::array({choice});
  body["usage"] = usage_json(usage);
  return dump(body);
}

std::string chunk_event(const ResponseMeta& meta, const std::string& text,
                        const std::optional<std::vector<LogprobEntry>>& logprobs, const ChunkOptions& options) {
  json body;
  json choice;
  if (meta.endpoint == Endpoint::chat) {
    body = envelope(meta, "chat.completion.chunk");
    json delta = json::object();
    if (options.first) delta["role"] = "assistant";
    if (options.first || !text.empty()) delta["content"] = text;
    choice = {{"index", 0}, {"delta", delta}, {"logprobs", logprobs_json(meta.endpoint, logprobs, 0)},
              {"finish_reason", finish_json(options.finish_reason)}};
  } else {
    body = envelope(meta, "text_completion");
    choice = {{"text", text}, {"index", 0}, {"logprobs", logprobs_json(meta.endpoint, logprobs, options.text_offset)},
              {"finish_reason", finish_json(options.finish_reason)}};
  }
  body["choices"] = json::array({choice});
  if (options.with_usage) body["usage"] = nullptr;
  return sse(body);
}

std::string usage_event(const ResponseMeta& meta, const Usage& usage) {
  json body = envelope(meta, meta.endpoint == Endpoint::chat ? "chat.completion.chunk" : "text_completion");
  body["choices"] = json::array();
  body["usage"] = usage_json(usage);
  return sse(body);
}

HttpResponse error_response(const ApiError& error) {
  HttpResponse res;
  res.status = http_status(error.kind);
  res.body = error_json(error);
  if (res.status == 503) res.headers.emplace_back("Retry-After", "1");
  return res;
}

std::string error_event(const ApiError& error) { return "data: " + error_json(error) + "\n\n"; }

}  // namespace sbits::server
