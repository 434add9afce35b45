// The HTTP transport: cpp-httplib behind a small interface, so the layers above see requests
// and responses, never sockets.
//
// What this layer owns, so no handler has to think about it:
//  - routing by exact (method, path); unknown paths answer 404 and known paths with another
//    method 405, both as OpenAI-shaped JSON errors;
//  - the body limit (413 before the body is buffered when Content-Length says it is too big);
//  - the API key (Authorization: Bearer KEY, compared in constant time; 401 before the body is
//    read), skipped for routes registered as public;
//  - CORS (when an origin is configured): the allow-origin header on every response and the
//    answer to preflight OPTIONS requests;
//  - never throwing into cpp-httplib: a handler that throws anyway becomes a logged 500.
//
// Threading: handlers run on the transport's worker threads (`worker_threads` of them, each
// serving one connection at a time), so they must be thread-safe. A streaming response's
// producer runs on the same worker thread after the headers have been sent.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sbits::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                       // 0: any free port (see HttpServer::bind)
  std::string api_key;                   // "": no key needed
  std::string cors_origin;               // "": no CORS headers
  size_t max_body_bytes = 8u << 20;      // larger bodies: 413
  int worker_threads = 32;               // concurrent connections served
  int read_timeout_s = 30;               // a client that stalls sending its request is dropped
  int write_timeout_s = 30;              // ... or stalls reading the response
};

struct HttpRequest {
  std::string method;
  std::string path;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // The first value of a header (case-insensitive name), "" when absent.
  std::string header(std::string_view name) const;
};

// Writes one piece of a streamed body; returns false once the client is gone (stop then).
using ChunkWriter = std::function<bool(std::string_view)>;

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, the body is streamed (chunked transfer encoding) instead of `body`: the function
  // is called once, after the headers are sent, and returns when the stream is complete or the
  // writer has returned false. It is destroyed without being called when the client left
  // before the headers went out, so owners must release their resources in destructors.
  std::function<void(const ChunkWriter& write)> stream;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  explicit HttpServer(HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Register before bind(). Public routes need no API key (health checks).
  void route(const std::string& method, const std::string& path, HttpHandler handler, bool is_public = false);

  // Binds the listening socket; returns the port (the chosen one when options.port is 0), or
  // -1 with `error` set when the address cannot be bound.
  int bind(std::string* error);
  // Serves until stop(); call after bind(), typically on its own thread.
  void run();
  // Stops accepting and makes run() return once the workers' current requests are done.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Compares a secret with a candidate in time that depends only on their lengths.
bool constant_time_equal(std::string_view secret, std::string_view candidate);

}  // namespace sbits::server
