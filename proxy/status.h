#pragma once
// Kubernetes `Status` bodies for the responses the proxy makes itself (refusals and gateway
// errors), so kubectl prints a sensible message.

#include <string>
#include <string_view>

namespace kscribe::proxy {

/// The Status `reason` for an HTTP status: Kubernetes' StatusReason where one exists
/// (BadRequest, Unauthorized, Forbidden, Timeout, ServiceUnavailable, ...), else the HTTP reason
/// phrase in CamelCase (RequestHeaderFieldsTooLarge, URITooLong, BadGateway).
std::string_view statusReason(unsigned status);
/// The HTTP reason phrase ("Not Found").
std::string_view reasonPhrase(unsigned status);
/// `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",...}`.
std::string statusBody(unsigned status, std::string_view message, std::string_view reason = {});
/// A whole HTTP/1.1 response carrying statusBody(); `close` adds `Connection: close`.
std::string statusResponse(unsigned status, std::string_view message, bool close,
                           std::string_view reason = {});

}  // namespace kscribe::proxy
