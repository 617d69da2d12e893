#include "proxy/http_rules.h"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <iterator>
#include <string>
#include <vector>

namespace kscribe::proxy {
namespace http = boost::beast::http;

namespace {
bool startsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && boost::beast::iequals(s.substr(0, prefix.size()), prefix);
}
}  // namespace

Verdict classifyHeadError(const boost::system::error_code& ec, bool start_line_parsed) {
  if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
    if (!start_line_parsed) return {414, "request line too long"};
    return {431, "request header block too large"};
  }
  if (ec == http::error::bad_content_length) return {400, "bad or conflicting Content-Length"};
  if (ec == http::error::bad_transfer_encoding)
    return {400, "bad Transfer-Encoding (or Transfer-Encoding with Content-Length)"};
  if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message)
    return {400, "malformed request"};
  return {};
}

Verdict classifyBodyError(const boost::system::error_code& ec) {
  if (ec == http::error::bad_chunk || ec == http::error::bad_chunk_extension)
    return {400, "bad chunk in request body"};
  if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message)
    return {400, "malformed request body"};
  return {};
}

Verdict checkRequestHead(const http::fields& fields, std::string_view method,
                         std::string_view target, const Limits& limits) {
  // "GET " + target + " HTTP/1.1"
  if (method.size() + target.size() + 10 > limits.max_request_line)
    return {414, "request line too long"};
  const bool has_te = fields.count(http::field::transfer_encoding) > 0;
  if (has_te && fields.count(http::field::content_length) > 0)
    return {400, "both Content-Length and Transfer-Encoding"};
  if (has_te) {
    // RFC 9112 6.3: a request whose final transfer coding is not chunked has no reliable length.
    const auto te = fields[http::field::transfer_encoding];
    http::token_list list{te};
    std::string_view last;
    for (auto t : list) last = t;
    if (!boost::beast::iequals(last, "chunked"))
      return {400, "Transfer-Encoding must end in chunked"};
  }
  return {};
}

void stripHopByHop(http::fields& fields, bool keep_upgrade) {
  std::vector<std::string> named;
  for (auto it = fields.find(http::field::connection);
       it != fields.end() && it->name() == http::field::connection; ++it) {
    for (auto t : http::token_list{it->value()}) named.emplace_back(t);
  }
  for (const auto& n : named) {
    if (keep_upgrade && boost::beast::iequals(n, "upgrade")) continue;
    if (boost::beast::iequals(n, "transfer-encoding") || boost::beast::iequals(n, "content-length"))
      continue;  // framing is ours to keep consistent
    fields.erase(n);
  }
  fields.erase(http::field::connection);
  fields.erase(http::field::keep_alive);
  fields.erase(http::field::te);
  fields.erase(http::field::trailer);
  if (!keep_upgrade) fields.erase(http::field::upgrade);
  std::vector<std::string> proxy_fields;
  for (const auto& f : fields) {
    if (startsWithNoCase(f.name_string(), "proxy-")) proxy_fields.emplace_back(f.name_string());
  }
  for (const auto& n : proxy_fields) fields.erase(n);
}

bool isCredentialField(std::string_view name) {
  return boost::beast::iequals(name, "authorization") || boost::beast::iequals(name, "cookie") ||
         boost::beast::iequals(name, "proxy-authorization");
}

bool hasImpersonation(const http::fields& fields) {
  for (const auto& f : fields) {
    if (startsWithNoCase(f.name_string(), "impersonate-")) return true;
  }
  return false;
}

Headers tapHeaders(const http::fields& fields) {
  Headers out;
  out.reserve(static_cast<std::size_t>(std::distance(fields.begin(), fields.end())));
  for (const auto& f : fields) {
    if (isCredentialField(f.name_string())) continue;
    out.emplace_back(std::string(f.name_string()), std::string(f.value()));
  }
  return out;
}

}  // namespace kscribe::proxy
