#pragma once
// HTTP/1.1 rules the relay applies to what it parses: limit classification, request-framing
// checks (RFC 9112 section 6), hop-by-hop header removal (RFC 9110 section 7.6.1) and the
// credential headers that never leave the proxy. Internal to proxy/ (includes Beast).

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/system/error_code.hpp>
#include <string_view>

#include "proxy/server.h"
#include "proxy/tap.h"

namespace kscribe::proxy {

/// A refusal the proxy makes itself: status 0 means "no refusal".
struct Verdict {
  unsigned status = 0;
  std::string_view message;
  bool close = true;  // the connection must close after the answer
  explicit operator bool() const { return status != 0; }
};

/// Maps a failed request-head read to a refusal. `start_line_parsed` tells a request line too
/// long to ever complete (414) from a header block too large (431): Beast parses the start line
/// as soon as its CRLF arrives, so an unparsed start line at the header limit is longer than the
/// limit. End of stream and resets map to status 0: close silently.
Verdict classifyHeadError(const boost::system::error_code& ec, bool start_line_parsed);
/// Maps a failed request-body read (bad chunk size, ...) to a refusal, or 0 for a vanished peer.
Verdict classifyBodyError(const boost::system::error_code& ec);

/// Checks a parsed request head: request-line length, Content-Length with Transfer-Encoding,
/// a Transfer-Encoding that does not end in chunked.
Verdict checkRequestHead(const boost::beast::http::fields& fields, std::string_view method,
                         std::string_view target, const Limits& limits);

/// Removes hop-by-hop fields: those named in Connection, and Connection, Keep-Alive, TE,
/// Trailer, Upgrade, Proxy-*. Transfer-Encoding is kept: the relay re-frames bodies exactly as
/// received, so the field stays true on the next hop. `keep_upgrade` keeps Upgrade (and
/// Connection: Upgrade is re-added by the caller).
void stripHopByHop(boost::beast::http::fields& fields, bool keep_upgrade);

/// Authorization, Cookie, Proxy-Authorization: never forwarded, never tapped.
bool isCredentialField(std::string_view name);
/// True if any Impersonate-* field is present (clients may not impersonate through kscribe).
bool hasImpersonation(const boost::beast::http::fields& fields);
/// Copies the fields for the tap, credential fields removed.
Headers tapHeaders(const boost::beast::http::fields& fields);

}  // namespace kscribe::proxy
