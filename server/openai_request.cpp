#include "server/openai_request.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace sbits::server {
namespace {

using json = nlohmann::json;

// Thrown only inside this file, by the field readers; the parse_* entry points turn it into
// their ApiError result, so nothing escapes to the caller.
struct FieldError {
  ApiError error;
};

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    default: return "an unknown type";
  }
}

[[noreturn]] void fail(const std::string& field, std::string message, std::string code = "invalid_value") {
  throw FieldError{invalid_request(std::move(message), field, std::move(code))};
}

[[noreturn]] void fail_type(const std::string& field, const char* expected, const json& found) {
  fail(field, fmt::format("'{}' must be {}, got {}", field, expected, type_name(found)), "invalid_type");
}

// Typed access to the fields of one JSON object; `prefix` names nested fields in messages.
class Fields {
 public:
  Fields(const json& obj, std::string prefix = {}) : obj_(obj), prefix_(std::move(prefix)) {}

  std::string name(const char* key) const { return prefix_ + key; }

  // The value, or nullptr when absent or null (null means "not given", as in OpenAI's API).
  const json* get(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }

  std::optional<bool> boolean(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) fail_type(name(key), "a boolean", *v);
    return v->get<bool>();
  }

  std::optional<std::string> string(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail_type(name(key), "a string", *v);
    return v->get<std::string>();
  }

  std::optional<double> number(const char* key, double lo, double hi) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) fail_type(name(key), "a number", *v);
    const double x = v->get<double>();
    if (!(x >= lo && x <= hi)) fail(name(key), fmt::format("'{}' must be in [{}, {}], got {}", name(key), lo, hi, x));
    return x;
  }

  std::optional<int64_t> integer(const char* key, int64_t lo, int64_t hi) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    return as_integer(*v, name(key), lo, hi);
  }

  static int64_t as_integer(const json& v, const std::string& field, int64_t lo, int64_t hi) {
    int64_t x = 0;
    if (v.is_number_integer()) {
      if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
        fail(field, fmt::format("'{}' must be in [{}, {}], got {}", field, lo, hi, v.get<uint64_t>()));
      x = v.get<int64_t>();
    } else if (v.is_number_float() && std::isfinite(v.get<double>()) && std::floor(v.get<double>()) == v.get<double>() &&
               std::abs(v.get<double>()) < 9.0e15) {
      x = static_cast<int64_t>(v.get<double>());  // 5.0 from a loosely typed client
    } else {
      fail_type(field, "an integer", v);
    }
    if (x < lo || x > hi) fail(field, fmt::format("'{}' must be in [{}, {}], got {}", field, lo, hi, x));
    return x;
  }

 private:
  const json& obj_;
  std::string prefix_;
};

json parse_object(std::string_view body) {
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::parse_error& e) {
    throw FieldError{invalid_request(fmt::format("malformed JSON in the request body: {}", e.what()), "", "invalid_json")};
  }
  if (!doc.is_object())
    throw FieldError{invalid_request(fmt::format("the request body must be a JSON object, got {}", type_name(doc)), "",
                                     "invalid_json")};
  return doc;
}

[[noreturn]] void unsupported(const std::string& field, const std::string& message) {
  fail(field, message, "unsupported_parameter");
}

// Features we do not implement: a clear 400 rather than an answer that silently differs.
void reject_unsupported(const Fields& f, Endpoint endpoint) {
  if (auto n = f.integer("n", 0, 1 << 20); n && *n != 1)
    unsupported("n", fmt::format("'n' must be 1 (got {}): this server returns one choice per request; send {} "
                                 "separate requests instead",
                                 *n, *n));
  if (auto b = f.integer("best_of", 0, 1 << 20); b && *b != 1)
    unsupported("best_of", "'best_of' must be 1: this server returns one choice per request");
  if (const json* lb = f.get("logit_bias")) {
    if (!lb->is_object()) fail_type("logit_bias", "an object", *lb);
    if (!lb->empty()) unsupported("logit_bias", "'logit_bias' is not supported by this server");
  }
  if (endpoint == Endpoint::completion) {
    if (f.boolean("echo").value_or(false)) unsupported("echo", "'echo' is not supported by this server");
    if (!f.string("suffix").value_or("").empty()) unsupported("suffix", "'suffix' is not supported by this server");
    return;
  }
  for (const char* key : {"tools", "functions"}) {
    if (const json* t = f.get(key)) {
      if (!t->is_array()) fail_type(key, "an array", *t);
      if (!t->empty()) unsupported(key, fmt::format("'{}' (function calling) is not supported by this server", key));
    }
  }
  if (const json* rf = f.get("response_format")) {
    if (!rf->is_object()) fail_type("response_format", "an object", *rf);
    const std::string type = Fields(*rf, "response_format.").string("type").value_or("text");
    if (type != "text")
      unsupported("response_format", fmt::format("response_format type '{}' is not supported (only 'text')", type));
  }
}

std::vector<std::string> parse_stop(const Fields& f) {
  const json* v = f.get("stop");
  if (!v) return {};
  if (v->is_string()) return {v->get<std::string>()};
  if (!v->is_array()) fail_type("stop", "a string or an array of strings", *v);
  constexpr size_t kMaxStops = 16;
  if (v->size() > kMaxStops) fail("stop", fmt::format("'stop' may hold at most {} strings, got {}", kMaxStops, v->size()));
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) fail_type(fmt::format("stop[{}]", i), "a string", (*v)[i]);
    out.push_back((*v)[i].get<std::string>());
  }
  return out;
}

// Fields shared by both endpoints: sampling, limits, stop, streaming.
void parse_common(const Fields& f, CompletionRequest& r) {
  r.model = f.string("model").value_or("");
  reject_unsupported(f, r.endpoint);
  constexpr int64_t kMaxTokens = 1 << 30;
  if (auto v = f.integer("max_tokens", 1, kMaxTokens)) r.max_tokens = static_cast<int>(*v);
  if (auto v = f.integer("max_completion_tokens", 1, kMaxTokens)) r.max_tokens = static_cast<int>(*v);
  SamplerParams& s = r.sampling;
  s = SamplerParams{};
  s.temperature = 1.0f;  // OpenAI's defaults: plain sampling at temperature 1, no truncation
  s.top_k = 0;
  s.top_p = 1.0f;
  s.min_p = 0.0f;
  if (auto v = f.number("temperature", 0.0, 2.0)) s.temperature = static_cast<float>(*v);
  if (auto v = f.number("top_p", 0.0, 1.0)) s.top_p = static_cast<float>(*v);
  if (auto v = f.integer("top_k", 0, 1 << 30)) s.top_k = static_cast<int32_t>(*v);
  if (auto v = f.number("min_p", 0.0, 1.0)) s.min_p = static_cast<float>(*v);
  if (auto v = f.number("presence_penalty", -2.0, 2.0)) s.presence_penalty = static_cast<float>(*v);
  if (auto v = f.number("frequency_penalty", -2.0, 2.0)) s.frequency_penalty = static_cast<float>(*v);
  if (auto v = f.number("repeat_penalty", 0.01, 100.0)) s.repeat_penalty = static_cast<float>(*v);
  if (auto v = f.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) {
    s.seed = static_cast<uint64_t>(*v);
    r.seed_given = true;
  }
  r.stop = parse_stop(f);
  r.stream = f.boolean("stream").value_or(false);
  if (const json* so = f.get("stream_options")) {
    if (!so->is_object()) fail_type("stream_options", "an object", *so);
    r.include_usage = Fields(*so, "stream_options.").boolean("include_usage").value_or(false);
  }
}

std::string message_content(const json& content, const std::string& field) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) fail_type(field, "a string or an array of content parts", content);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const std::string part_name = fmt::format("{}[{}]", field, i);
    const json& part = content[i];
    if (!part.is_object()) fail_type(part_name, "an object", part);
    Fields p(part, part_name + ".");
    const std::string type = p.string("type").value_or("");
    if (type != "text")
      unsupported(part_name + ".type", fmt::format("content part type '{}' is not supported: this model reads text only",
                                                   type));
    text += p.string("text").value_or("");
  }
  return text;
}

std::vector<InputMessage> parse_messages(const Fields& f) {
  const json* v = f.get("messages");
  if (!v) fail("messages", "'messages' is required", "missing_field");
  if (!v->is_array()) fail_type("messages", "an array", *v);
  if (v->empty()) fail("messages", "'messages' must contain at least one message");
  std::vector<InputMessage> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const std::string name = fmt::format("messages[{}]", i);
    const json& m = (*v)[i];
    if (!m.is_object()) fail_type(name, "an object", m);
    Fields mf(m, name + ".");
    auto role = mf.string("role");
    if (!role) fail(name + ".role", fmt::format("'{}.role' is required", name), "missing_field");
    if (*role == "developer") role = "system";
    if (*role != "system" && *role != "user" && *role != "assistant")
      fail(name + ".role", fmt::format("'{}.role' must be system, user or assistant, got '{}'", name, *role));
    const json* content = mf.get("content");
    if (!content && *role != "assistant")
      fail(name + ".content", fmt::format("'{}.content' is required", name), "missing_field");
    out.push_back({*role, content ? message_content(*content, name + ".content") : std::string()});
  }
  return out;
}

void parse_prompt(const Fields& f, CompletionRequest& r) {
  const json* v = f.get("prompt");
  if (!v) fail("prompt", "'prompt' is required", "missing_field");
  if (v->is_string()) {
    r.prompt = v->get<std::string>();
    return;
  }
  if (!v->is_array()) fail_type("prompt", "a string, an array of one string or an array of token ids", *v);
  if (v->empty()) fail("prompt", "'prompt' must not be an empty array");
  if ((*v)[0].is_string()) {
    if (v->size() != 1)
      unsupported("prompt", fmt::format("'prompt' holds {} prompts: this server completes one prompt per request", v->size()));
    r.prompt = (*v)[0].get<std::string>();
    return;
  }
  std::vector<int32_t> ids;
  for (size_t i = 0; i < v->size(); ++i)
    ids.push_back(static_cast<int32_t>(Fields::as_integer((*v)[i], fmt::format("prompt[{}]", i), 0, (1u << 31) - 1)));
  r.prompt_tokens = std::move(ids);
}

template <typename T, typename F>
Parsed<T> guarded(F&& parse) {
  try {
    return parse();
  } catch (FieldError& e) {
    return std::move(e.error);
  }
}

}  // namespace

Parsed<CompletionRequest> parse_chat_request(std::string_view body) {
  return guarded<CompletionRequest>([&] {
    const json doc = parse_object(body);
    const Fields f(doc);
    CompletionRequest r;
    r.endpoint = Endpoint::chat;
    parse_common(f, r);
    r.messages = parse_messages(f);
    const bool want = f.boolean("logprobs").value_or(false);
    const auto top = f.integer("top_logprobs", 0, 20);
    if (top && !want) fail("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (want) r.logprobs = static_cast<int>(top.value_or(0));
    return r;
  });
}

Parsed<CompletionRequest> parse_completion_request(std::string_view body) {
  return guarded<CompletionRequest>([&] {
    const json doc = parse_object(body);
    const Fields f(doc);
    CompletionRequest r;
    r.endpoint = Endpoint::completion;
    r.max_tokens = 16;  // the legacy endpoint's documented default
    parse_common(f, r);
    parse_prompt(f, r);
    if (auto n = f.integer("logprobs", 0, 5)) r.logprobs = static_cast<int>(*n);
    return r;
  });
}

Parsed<TokenizeRequest> parse_tokenize_request(std::string_view body) {
  return guarded<TokenizeRequest>([&] {
    const json doc = parse_object(body);
    const Fields f(doc);
    TokenizeRequest r;
    auto content = f.string("content");
    if (!content) fail("content", "'content' is required", "missing_field");
    r.content = std::move(*content);
    r.add_special = f.boolean("add_special").value_or(false);
    r.parse_special = f.boolean("parse_special").value_or(true);
    r.with_pieces = f.boolean("with_pieces").value_or(false);
    return r;
  });
}

Parsed<DetokenizeRequest> parse_detokenize_request(std::string_view body) {
  return guarded<DetokenizeRequest>([&] {
    const json doc = parse_object(body);
    const Fields f(doc);
    const json* v = f.get("tokens");
    if (!v) fail("tokens", "'tokens' is required", "missing_field");
    if (!v->is_array()) fail_type("tokens", "an array of integers", *v);
    DetokenizeRequest r;
    for (size_t i = 0; i < v->size(); ++i)
      r.tokens.push_back(static_cast<int32_t>(Fields::as_integer((*v)[i], fmt::format("tokens[{}]", i), 0, (1u << 31) - 1)));
    return r;
  });
}

}  // namespace sbits::server
