// The one error type of the server, and how each kind maps to an HTTP status and to OpenAI's
// error object {"error": {"message", "type", "param", "code"}}.
//
// Every layer below the transport reports failures as an ApiError value (never by throwing
// across a layer), so a handler can always answer with the right status and a message that
// says what was expected and what was found.
#pragma once

#include <string>

namespace sbits::server {

enum class ErrorKind {
  invalid_request,    // 400: malformed JSON, wrong types, bad values, prompt too long
  unauthorized,       // 401: missing or wrong API key
  not_found,          // 404: unknown route or model
  method_not_allowed, // 405: known route, other method
  payload_too_large,  // 413: body over --max-body
  overloaded,         // 503 + Retry-After: every slot busy and the queue full
  unavailable,        // 503 + Retry-After: model still loading, or shutting down
  timeout,            // 504: the request ran past --timeout
  internal,           // 500: a real fault (logged)
};

struct ApiError {
  ErrorKind kind = ErrorKind::internal;
  std::string message;
  std::string param;  // the request field at fault ("" when none)
  std::string code;   // OpenAI-style machine-readable code ("" = derived from the kind)
};

inline ApiError invalid_request(std::string message, std::string param = {}, std::string code = {}) {
  return {ErrorKind::invalid_request, std::move(message), std::move(param), std::move(code)};
}

int http_status(ErrorKind kind);
// OpenAI's "type" field: "invalid_request_error", "authentication_error", ...
const char* error_type(ErrorKind kind);
// The default "code" of a kind ("invalid_api_key", "not_found", ...).
const char* default_error_code(ErrorKind kind);
// The JSON text {"error": {...}} (always valid UTF-8: bad bytes in messages are replaced).
std::string error_json(const ApiError& error);

}  // namespace sbits::server
