#include "server/http_server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <exception>
#include <optional>

#include "server/api_error.h"

namespace sbits::server {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

void set_error(httplib::Response& res, const ApiError& e) {
  res.status = http_status(e.kind);
  res.set_content(error_json(e), "application/json");
  if (e.kind == ErrorKind::overloaded || e.kind == ErrorKind::unavailable) res.set_header("Retry-After", "1");
}

// A request answered before its body was read leaves that body on the connection, where it
// would be parsed as the next request; closing the connection avoids that.
void close_if_body_unread(const httplib::Request& req, httplib::Response& res) {
  if (req.has_header("Content-Length") || req.has_header("Transfer-Encoding")) res.set_header("Connection", "close");
}

}  // namespace

bool constant_time_equal(std::string_view secret, std::string_view candidate) {
  // The loop runs over the candidate's length whatever the secret, and every byte is compared,
  // so the time tells an attacker nothing about where the first difference lies.
  volatile unsigned char diff = secret.size() == candidate.size() ? 0 : 1;
  const size_t n = secret.size();
  for (size_t i = 0; i < candidate.size(); ++i) {
    const unsigned char s = n ? static_cast<unsigned char>(secret[i % n]) : 0;
    diff = diff | static_cast<unsigned char>(s ^ static_cast<unsigned char>(candidate[i]));
  }
  return diff == 0;
}

std::string HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

struct Route {
  std::string method;
  std::string path;
  HttpHandler handler;
  bool is_public = false;
};

struct HttpServer::Impl {
  HttpOptions opt;
  httplib::Server svr;
  std::vector<Route> routes;

  const Route* find(const std::string& method, const std::string& path, bool* path_known) const {
    *path_known = false;
    for (const Route& r : routes) {
      if (r.path != path) continue;
      *path_known = true;
      if (r.method == method || (method == "HEAD" && r.method == "GET")) return &r;
    }
    return nullptr;
  }

  void add_cors(httplib::Response& res) const {
    if (opt.cors_origin.empty()) return;
    res.set_header("Access-Control-Allow-Origin", opt.cors_origin);
    if (opt.cors_origin != "*") res.set_header("Vary", "Origin");
  }

  void preflight(const httplib::Request& req, httplib::Response& res) const {
    res.status = 204;
    if (opt.cors_origin.empty()) return;
    res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    const std::string asked = req.get_header_value("Access-Control-Request-Headers");
    res.set_header("Access-Control-Allow-Headers", asked.empty() ? "Authorization, Content-Type" : asked);
    res.set_header("Access-Control-Max-Age", "86400");
  }

  // 401 when the route needs the key and the request lacks it; nullopt when allowed.
  std::optional<ApiError> check_key(const httplib::Request& req) const {
    const std::string auth = req.get_header_value("Authorization");
    constexpr std::string_view kBearer = "Bearer ";
    if (auth.empty())
      return ApiError{ErrorKind::unauthorized, "missing API key: send the header 'Authorization: Bearer KEY'", "", ""};
    if (auth.size() < kBearer.size() || !iequals(std::string_view(auth).substr(0, kBearer.size()), kBearer))
      return ApiError{ErrorKind::unauthorized, "the Authorization header must be 'Bearer KEY'", "", ""};
    if (!constant_time_equal(opt.api_key, std::string_view(auth).substr(kBearer.size())))
      return ApiError{ErrorKind::unauthorized, "invalid API key", "", ""};
    return std::nullopt;
  }

  // Runs before the body is read: preflight, routing errors and the key check cost nothing.
  httplib::Server::HandlerResponse pre_route(const httplib::Request& req, httplib::Response& res) const {
    add_cors(res);
    if (req.method == "OPTIONS") {
      preflight(req, res);
      close_if_body_unread(req, res);
      return httplib::Server::HandlerResponse::Handled;
    }
    bool path_known = false;
    const Route* r = find(req.method, req.path, &path_known);
    std::optional<ApiError> err;
    if (!r && path_known)
      err = ApiError{ErrorKind::method_not_allowed, fmt::format("{} is not allowed on {}", req.method, req.path), "", ""};
    else if (!r)
      err = ApiError{ErrorKind::not_found, fmt::format("no route for {} {}", req.method, req.path), "", ""};
    else if (!r->is_public && !opt.api_key.empty())
      err = check_key(req);
    if (!err) return httplib::Server::HandlerResponse::Unhandled;
    set_error(res, *err);
    close_if_body_unread(req, res);
    return httplib::Server::HandlerResponse::Handled;
  }

  void dispatch(const httplib::Request& req, httplib::Response& res) const {
    bool path_known = false;
    const Route* r = find(req.method, req.path, &path_known);
    if (!r) {  // pre_route answered already; not reached
      set_error(res, {ErrorKind::not_found, "no route for " + req.path, "", ""});
      return;
    }
    HttpRequest in{req.method, req.path, req.body, {}};
    in.headers.assign(req.headers.begin(), req.headers.end());
    HttpResponse out;
    try {
      out = r->handler(in);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sbits-server: internal error in %s %s: %s\n", req.method.c_str(), req.path.c_str(), e.what());
      out = {};
      out.status = 500;
      out.body = error_json({ErrorKind::internal, std::string("internal error: ") + e.what(), "", ""});
    }
    write(std::move(out), res);
  }

  static void write(HttpResponse out, httplib::Response& res) {
    res.status = out.status;
    for (auto& [k, v] : out.headers) res.set_header(k, v);
    if (!out.stream) {
      res.set_content(std::move(out.body), out.content_type);
      return;
    }
    // shared_ptr: cpp-httplib copies the provider; the stream function (and what it owns) dies
    // with the last copy, which is when the response is destroyed.
    auto stream = std::make_shared<std::function<void(const ChunkWriter&)>>(std::move(out.stream));
    res.set_chunked_content_provider(out.content_type, [stream](size_t, httplib::DataSink& sink) {
      bool ok = true;
      const ChunkWriter writer = [&](std::string_view s) {
        if (ok && !s.empty()) ok = sink.write(s.data(), s.size());
        return ok;
      };
      try {
        (*stream)(writer);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "sbits-server: internal error while streaming: %s\n", e.what());
        ok = false;
      }
      if (ok) sink.done();
      return ok;
    });
  }

  // Bodies cpp-httplib produced itself (413, malformed request lines...) become JSON errors.
  httplib::Server::HandlerResponse on_error(const httplib::Request&, httplib::Response& res) const {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    ApiError e;
    if (res.status == 413) {
      e = {ErrorKind::payload_too_large,
           fmt::format("request body is larger than the limit of {} bytes", opt.max_body_bytes), "", ""};
    } else if (res.status == 404) {
      e = {ErrorKind::not_found, "not found", "", ""};
    } else if (res.status == 400) {
      e = invalid_request("malformed HTTP request");
    } else {
      e = {ErrorKind::internal, fmt::format("HTTP error {}", res.status), "", ""};
    }
    const int status = res.status;
    set_error(res, e);
    res.status = status;
    add_cors(res);
    return httplib::Server::HandlerResponse::Handled;
  }

  void install() {
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      try {
        return pre_route(req, res);
      } catch (const std::exception& e) {
        set_error(res, {ErrorKind::internal, e.what(), "", ""});
        return httplib::Server::HandlerResponse::Handled;
      }
    });
    const auto handler = [this](const httplib::Request& req, httplib::Response& res) { dispatch(req, res); };
    // One catch-all per method: routing (and its 404/405 answers) is ours, in pre_route.
    svr.Get(".*", handler);
    svr.Post(".*", handler);
    svr.Put(".*", handler);
    svr.Patch(".*", handler);
    svr.Delete(".*", handler);
    svr.set_error_handler(httplib::Server::HandlerWithResponse(
        [this](const httplib::Request& req, httplib::Response& res) { return on_error(req, res); }));
    svr.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown exception";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      std::fprintf(stderr, "sbits-server: internal error in %s %s: %s\n", req.method.c_str(), req.path.c_str(),
                   what.c_str());
      set_error(res, {ErrorKind::internal, "internal error: " + what, "", ""});
    });
    svr.set_payload_max_length(opt.max_body_bytes);
    svr.set_read_timeout(opt.read_timeout_s, 0);
    svr.set_write_timeout(opt.write_timeout_s, 0);
    svr.set_keep_alive_timeout(5);
    svr.set_tcp_nodelay(true);  // SSE chunks are small and latency-sensitive
    const size_t threads = static_cast<size_t>(std::max(1, opt.worker_threads));
    svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  }
};

HttpServer::HttpServer(HttpOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->opt = std::move(options);
  impl_->install();
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::route(const std::string& method, const std::string& path, HttpHandler handler, bool is_public) {
  impl_->routes.push_back({method, path, std::move(handler), is_public});
}

int HttpServer::bind(std::string* error) {
  const HttpOptions& o = impl_->opt;
  int port = -1;
  if (o.port == 0) {
    port = impl_->svr.bind_to_any_port(o.host);
  } else if (impl_->svr.bind_to_port(o.host, o.port)) {
    port = o.port;
  }
  if (port <= 0) {
    if (error) *error = fmt::format("cannot listen on {}:{} (address in use, or not an address of this machine)", o.host, o.port);
    return -1;
  }
  return port;
}

void HttpServer::run() { impl_->svr.listen_after_bind(); }

void HttpServer::stop() {
  if (impl_) impl_->svr.stop();
}

}  // namespace sbits::server
