#include "server/api_error.h"

#include <nlohmann/json.hpp>

namespace sbits::server {

int http_status(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_request: return 400;
    case ErrorKind::unauthorized: return 401;
    case ErrorKind::not_found: return 404;
    case ErrorKind::method_not_allowed: return 405;
    case ErrorKind::payload_too_large: return 413;
    case ErrorKind::overloaded: return 503;
    case ErrorKind::unavailable: return 503;
    case ErrorKind::timeout: return 504;
    case ErrorKind::internal: return 500;
  }
  return 500;
}

const char* error_type(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_request: return "invalid_request_error";
    case ErrorKind::unauthorized: return "authentication_error";
    case ErrorKind::not_found: return "invalid_request_error";
    case ErrorKind::method_not_allowed: return "invalid_request_error";
    case ErrorKind::payload_too_large: return "invalid_request_error";
    case ErrorKind::overloaded: return "server_overloaded";
    case ErrorKind::unavailable: return "unavailable_error";
    case ErrorKind::timeout: return "timeout_error";
    case ErrorKind::internal: return "server_error";
  }
  return "server_error";
}

const char* default_error_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_request: return "invalid_request";
    case ErrorKind::unauthorized: return "invalid_api_key";
    case ErrorKind::not_found: return "not_found";
    case ErrorKind::method_not_allowed: return "method_not_allowed";
    case ErrorKind::payload_too_large: return "payload_too_large";
    case ErrorKind::overloaded: return "server_overloaded";
    case ErrorKind::unavailable: return "unavailable";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::internal: return "internal_error";
  }
  return "internal_error";
}

std::string error_json(const ApiError& error) {
  nlohmann::ordered_json e = {{"message", error.message},
                      {"type", error_type(error.kind)},
                      {"param", error.param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(error.param)},
                      {"code", error.code.empty() ? default_error_code(error.kind) : error.code}};
  // Messages may quote request text; replace rather than throw on ill-formed UTF-8.
  return nlohmann::ordered_json{{"error", std::move(e)}}.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace sbits::server
