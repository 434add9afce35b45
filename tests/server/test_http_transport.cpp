// The transport layer in-process (no model): routing errors, the body limit, API keys, CORS,
// a handler that throws, streaming, and the application answering 503 until its model loads.
#include <doctest/doctest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "server/http_server.h"
#include "server/server_app.h"
#include "server/worker_pool.h"

namespace {

using namespace sbits::server;
using json = nlohmann::json;

// An HttpServer on 127.0.0.1:any, serving on its own thread for the test's lifetime.
struct Running {
  HttpServer http;
  int port = -1;
  std::thread thread;
  explicit Running(HttpOptions o, const std::function<void(HttpServer&)>& setup) : http([&] {
    o.host = "127.0.0.1";
    o.port = 0;
    o.worker_threads = 4;
    return o;
  }()) {
    setup(http);
    std::string error;
    port = http.bind(&error);
    REQUIRE_MESSAGE(port > 0, error);
    thread = std::thread([this] { http.run(); });
  }
  ~Running() {
    http.stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(10, 0);
    return c;
  }
};

json error_of(const httplib::Result& r, int status) {
  REQUIRE(r);
  CHECK(r->status == status);
  const json j = json::parse(r->body, nullptr, false);
  REQUIRE_MESSAGE(j.is_object(), r->body);
  REQUIRE(j.contains("error"));
  return j["error"];
}

void routes(HttpServer& h) {
  h.route("GET", "/ok", [](const HttpRequest&) { return HttpResponse{200, "application/json", R"({"ok":true})", {}, {}}; });
  h.route("GET", "/public", [](const HttpRequest&) { return HttpResponse{200, "text/plain", "hi", {}, {}}; }, true);
  h.route("POST", "/echo", [](const HttpRequest& r) { return HttpResponse{200, "text/plain", r.body, {}, {}}; });
  h.route("GET", "/throws", [](const HttpRequest&) -> HttpResponse { throw std::runtime_error("boom"); });
  h.route("GET", "/stream", [](const HttpRequest&) {
    HttpResponse r;
    r.content_type = "text/event-stream";
    r.stream = [](const ChunkWriter& w) {
      for (int i = 0; i < 3; ++i)
        if (!w("data: " + std::to_string(i) + "\n\n")) return;
    };
    return r;
  });
}

}  // namespace

TEST_CASE("transport: routing errors, 413, a throwing handler, streaming") {
  HttpOptions o;
  o.max_body_bytes = 1024;
  Running s(o, routes);
  auto c = s.client();
  CHECK(c.Get("/ok")->body == R"({"ok":true})");
  CHECK(error_of(c.Get("/missing"), 404)["code"] == "not_found");
  CHECK(error_of(c.Post("/ok", "{}", "application/json"), 405)["code"] == "method_not_allowed");
  CHECK(c.Post("/echo", std::string(1024, 'x'), "text/plain")->status == 200);
  const json big = error_of(c.Post("/echo", std::string(1025, 'x'), "text/plain"), 413);
  CHECK(big["code"] == "payload_too_large");
  CHECK(big["message"].get<std::string>().find("1024") != std::string::npos);
  const json boom = error_of(c.Get("/throws"), 500);
  CHECK(boom["type"] == "server_error");
  CHECK(boom["message"].get<std::string>().find("boom") != std::string::npos);
  auto stream = c.Get("/stream");
  REQUIRE(stream);
  CHECK(stream->body == "data: 0\n\ndata: 1\n\ndata: 2\n\n");
  CHECK(c.Get("/ok")->status == 200);  // still serving
}

TEST_CASE("transport: API key before the body, public routes, CORS preflight") {
  HttpOptions o;
  o.api_key = "k-123";
  o.cors_origin = "*";
  Running s(o, routes);
  auto c = s.client();
  CHECK(c.Get("/public")->status == 200);
  CHECK(error_of(c.Get("/ok"), 401)["type"] == "authentication_error");
  CHECK(error_of(c.Get("/ok", {{"Authorization", "Bearer k-124"}}), 401)["code"] == "invalid_api_key");
  CHECK(c.Get("/ok", {{"Authorization", "Bearer k-123"}})->status == 200);
  CHECK(c.Get("/ok", {{"Authorization", "bearer k-123"}})->status == 200);  // the scheme is case-insensitive
  error_of(c.Post("/echo", std::string(100000, 'x'), "text/plain"), 401);
  auto pre = c.Options("/ok");
  REQUIRE(pre);
  CHECK(pre->status == 204);
  CHECK(pre->get_header_value("Access-Control-Allow-Origin") == "*");
  CHECK(c.Get("/public")->get_header_value("Access-Control-Allow-Origin") == "*");
}

TEST_CASE("the application answers 503 with Retry-After until its model is loaded") {
  AppOptions ao;
  ao.model_path = "/nonexistent/model.sbits";
  ao.model_id = "m";
  App app(ao);
  Running s(HttpOptions{}, [&](HttpServer& h) { app.install(h); });
  auto c = s.client();
  auto health = c.Get("/health");
  CHECK(error_of(health, 503)["code"] == "model_loading");
  CHECK(health->get_header_value("Retry-After") == "1");
  error_of(c.Get("/v1/models"), 503);
  error_of(c.Post("/v1/chat/completions", "{}", "application/json"), 503);
  auto metrics = c.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  CHECK(metrics->body.find("sbits_model_loaded 0") != std::string::npos);
  CHECK_THROWS(app.load());  // names the missing file
  error_of(c.Get("/health"), 503);
}

TEST_CASE("the sampling worker pool runs every task exactly once per batch") {
  for (int threads : {1, 2, 5}) {
    sbits::server::WorkerPool pool(threads);
    CHECK(pool.threads() == threads);
    for (int n : {0, 1, 2, 3, 7, 64}) {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.run(n, [&](int i) { hits[static_cast<size_t>(i)].fetch_add(1); });
        for (int i = 0; i < n; ++i) CHECK(hits[static_cast<size_t>(i)].load() == 1);
      }
    }
  }
}
