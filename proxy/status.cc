#include "proxy/status.h"

#include <nlohmann/json.hpp>

namespace kscribe::proxy {

std::string_view statusReason(unsigned status) {
  switch (status) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 408:
      return "Timeout";
    case 413:
      return "RequestEntityTooLarge";
    case 414:
      return "URITooLong";
    case 429:
      return "TooManyRequests";
    case 431:
      return "RequestHeaderFieldsTooLarge";
    case 500:
      return "InternalError";
    case 502:
      return "BadGateway";
    case 503:
      return "ServiceUnavailable";
    case 504:
      return "Timeout";
    default:
      return "Unknown";
  }
}

std::string_view reasonPhrase(unsigned status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Error";
  }
}

std::string statusBody(unsigned status, std::string_view message, std::string_view reason) {
  nlohmann::ordered_json j = {{"kind", "Status"},
                              {"apiVersion", "v1"},
                              {"metadata", nlohmann::json::object()},
                              {"status", "Failure"},
                              {"message", message},
                              {"reason", reason.empty() ? statusReason(status) : reason},
                              {"code", status}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string statusResponse(unsigned status, std::string_view message, bool close,
                           std::string_view reason) {
  const std::string body = statusBody(status, message, reason);
  std::string out;
  out.reserve(body.size() + 160);
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += reasonPhrase(status);
  out += "\r\nContent-Type: application/json\r\nCache-Control: no-cache, private\r\n";
  out += "Content-Length: ";
  out += std::to_string(body.size());
  out += "\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  out += body;
  return out;
}

}  // namespace kscribe::proxy
