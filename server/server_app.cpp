#include "server/server_app.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "engine/backends.h"
#include "engine/model.h"
#include "engine/text/chat_template.h"
#include "server/completions.h"
#include "server/openai_response.h"

namespace sbits::server {

using json = nlohmann::ordered_json;  // keys in OpenAI's order, for people reading replies

struct App::Engine {
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<Model> model;
  std::unique_ptr<ChatTemplate> chat_template;
  std::vector<int32_t> template_stop_tokens;
  std::unique_ptr<Scheduler> scheduler;
};

namespace {

HttpResponse json_response(const json& body, int status = 200) {
  HttpResponse res;
  res.status = status;
  res.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return res;
}

HttpResponse loading_response() {
  return error_response({ErrorKind::unavailable, "the model is loading; try again shortly", "", "model_loading"});
}

template <typename T>
const ApiError* error_of(const Parsed<T>& p) {
  return std::get_if<ApiError>(&p);
}

// The template's stop strings that are single control tokens ("<|im_end|>"): those decode to no
// text, so the stop matcher would never see them; the scheduler stops on their ids instead.
std::vector<int32_t> control_stop_tokens(const ChatTemplate& t, const Tokenizer& tok) {
  std::vector<int32_t> ids;
  for (const std::string& s : t.stop_strings()) {
    const std::vector<int32_t> enc = tok.encode_with_specials(s, false);
    if (enc.size() == 1 && tok.is_control(enc[0])) ids.push_back(enc[0]);
  }
  return ids;
}

}  // namespace

App::App(AppOptions options) : options_(std::move(options)) {}

App::~App() { shutdown(); }

HttpHandler App::counted(const std::string& path, HttpHandler handler) {
  return [this, path, handler = std::move(handler)](const HttpRequest& req) {
    HttpResponse res = handler(req);
    http_counts_.count(path, res.status);
    return res;
  };
}

void App::install(HttpServer& http) {
  http.route("GET", "/health", counted("/health", [this](const HttpRequest& r) { return health(r); }), /*is_public=*/true);
  http.route("GET", "/v1/models", counted("/v1/models", [this](const HttpRequest& r) { return models(r); }));
  http.route("GET", "/metrics", counted("/metrics", [this](const HttpRequest& r) { return metrics(r); }));
  http.route("POST", "/tokenize", counted("/tokenize", [this](const HttpRequest& r) { return tokenize(r); }));
  http.route("POST", "/detokenize", counted("/detokenize", [this](const HttpRequest& r) { return detokenize(r); }));
  http.route("POST", "/v1/chat/completions", counted("/v1/chat/completions", [this](const HttpRequest& r) {
               return completions(r, Endpoint::chat);
             }));
  http.route("POST", "/v1/completions", counted("/v1/completions", [this](const HttpRequest& r) {
               return completions(r, Endpoint::completion);
             }));
}

void App::load() {
  auto e = std::make_unique<Engine>();
  BackendOptions bo;
  bo.threads = options_.threads;
  e->backend = make_backend(options_.backend, bo);
  e->model = Model::load(options_.model_path, *e->backend);
  std::string spec = options_.chat_template.empty() ? e->model->chat_template() : options_.chat_template;
  e->chat_template = std::make_unique<ChatTemplate>(ChatTemplate::from_spec(spec.empty() ? "plain" : spec));
  e->template_stop_tokens = control_stop_tokens(*e->chat_template, e->model->tokenizer());
  e->scheduler = std::make_unique<Scheduler>(*e->model, options_.scheduler);
  created_ = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  engine_ = std::move(e);
  if (!stopping_.load()) ready_.store(true, std::memory_order_release);
}

void App::shutdown() {
  stopping_.store(true);
  if (engine_ && engine_->scheduler) engine_->scheduler->shutdown();
}

HttpResponse App::health(const HttpRequest&) const {
  if (!engine()) return loading_response();
  return json_response({{"status", "ok"}});
}

HttpResponse App::models(const HttpRequest&) const {
  const Engine* e = engine();
  if (!e) return loading_response();
  const ModelConfig& c = e->model->config();
  json model = {{"id", options_.model_id},
                {"object", "model"},
                {"created", created_},
                {"owned_by", "sbits"},
                {"meta",
                 {{"n_ctx", e->scheduler->n_ctx()},
                  {"n_ctx_train", c.context_length},
                  {"n_vocab", c.vocab_size},
                  {"n_params", e->model->parameter_count()},
                  {"bits_per_weight", e->model->bits_per_weight()},
                  {"parallel", e->scheduler->n_slots()},
                  {"backend", e->backend->device_description()},
                  {"chat_template", e->chat_template->name()}}}};
  return json_response({{"object", "list"}, {"data", json::array({model})}});
}

HttpResponse App::metrics(const HttpRequest&) const {
  const Engine* e = engine();
  HttpResponse res;
  res.content_type = "text/plain; version=0.0.4; charset=utf-8";
  if (e) {
    const SchedulerStats s = e->scheduler->stats();
    res.body = prometheus_text(&s, http_counts_);
  } else {
    res.body = prometheus_text(nullptr, http_counts_);
  }
  return res;
}

HttpResponse App::tokenize(const HttpRequest& req) const {
  const Engine* e = engine();
  if (!e) return loading_response();
  auto parsed = parse_tokenize_request(req.body);
  if (const ApiError* err = error_of(parsed)) return error_response(*err);
  const TokenizeRequest& r = std::get<TokenizeRequest>(parsed);
  const Tokenizer& tok = e->model->tokenizer();
  const std::vector<int32_t> ids =
      r.parse_special ? tok.encode_with_specials(r.content, r.add_special) : tok.encode(r.content, r.add_special);
  json tokens = json::array();
  for (int32_t id : ids) {
    if (r.with_pieces) tokens.push_back({{"id", id}, {"piece", tok.piece(id)}});
    else tokens.push_back(id);
  }
  return json_response({{"tokens", tokens}});
}

HttpResponse App::detokenize(const HttpRequest& req) const {
  const Engine* e = engine();
  if (!e) return loading_response();
  auto parsed = parse_detokenize_request(req.body);
  if (const ApiError* err = error_of(parsed)) return error_response(*err);
  const std::vector<int32_t>& ids = std::get<DetokenizeRequest>(parsed).tokens;
  const Tokenizer& tok = e->model->tokenizer();
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] >= tok.vocab_size())
      return error_response(invalid_request(
          fmt::format("'tokens[{}]' is {}, outside the vocabulary [0, {})", i, ids[i], tok.vocab_size()),
          fmt::format("tokens[{}]", i)));
  return json_response({{"content", tok.decode(ids)}});
}

HttpResponse App::completions(const HttpRequest& req, Endpoint endpoint) const {
  const Engine* e = engine();
  if (!e) return loading_response();
  if (stopping_.load()) return error_response({ErrorKind::unavailable, "the server is shutting down", "", ""});
  auto parsed = endpoint == Endpoint::chat ? parse_chat_request(req.body) : parse_completion_request(req.body);
  if (const ApiError* err = error_of(parsed)) return error_response(*err);
  const CompletionRequest& r = std::get<CompletionRequest>(parsed);
  if (!r.model.empty() && r.model != options_.model_id)
    return error_response({ErrorKind::not_found,
                           fmt::format("the model '{}' does not exist: this server serves '{}'", r.model, options_.model_id),
                           "model", "model_not_found"});
  const Tokenizer& tok = e->model->tokenizer();
  const PromptContext context{tok, *e->chat_template, e->template_stop_tokens, e->scheduler->n_ctx()};
  auto prepared = prepare_generation(r, context);
  if (const ApiError* err = error_of(prepared)) return error_response(*err);
  std::shared_ptr<Job> job = e->scheduler->submit(std::move(std::get<GenerationRequest>(prepared)));
  if (!job)
    return error_response({ErrorKind::overloaded,
                           fmt::format("all {} slots are busy and the queue is full; retry shortly", e->scheduler->n_slots()),
                           "", ""});
  const ResponseMeta meta{endpoint, new_response_id(endpoint),
                          std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count(),
                          options_.model_id};
  const ReplyOptions ro{r.stream && r.include_usage, r.logprobs >= 0};
  return r.stream ? streamed_reply(std::move(job), meta, ro, tok) : whole_reply(job, meta, ro, tok);
}

}  // namespace sbits::server
