#pragma once
// AWS Signature Version 4 (HMAC-SHA256 over OpenSSL), as S3 and every S3-compatible store expect.
// Pure functions: no sockets, no clock (the time is a parameter), so the published test vectors
// (aws-sig-v4-test-suite) run against it directly.

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kscribe::sigv4 {

/// Access key, secret and optional session token. Never logged: see redacted().
struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty: none
  bool empty() const { return access_key_id.empty() || secret_access_key.empty(); }
};

using Pairs = std::vector<std::pair<std::string, std::string>>;

/// The request to sign. `path` and `query` hold decoded bytes; the signer encodes them.
struct Request {
  std::string method;
  std::string path = "/";
  Pairs query;    // (name, value); order does not matter
  Pairs headers;  // every header here is signed; must include "host"
  // Hex SHA-256 of the body, or "UNSIGNED-PAYLOAD".
  std::string payload_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
};

/// What signing produced; the intermediate strings are kept for tests and for debugging a
/// SignatureDoesNotMatch (they hold no secret).
struct Signature {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;      // hex
  std::string authorization;  // the Authorization header value (header signing)
  std::string signed_headers;
};

constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
constexpr std::string_view kEmptyPayloadHash =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// RFC 3986 unreserved characters stay, everything else becomes %XX (uppercase); '/' is kept
/// when `keep_slash` (paths), encoded otherwise (query names and values).
std::string uriEncode(std::string_view s, bool keep_slash);
/// "20150830T123600Z" for `t` (UTC).
std::string amzDate(std::chrono::system_clock::time_point t);

std::string canonicalRequest(const Request& request, std::string* signed_headers = nullptr);
std::string stringToSign(const std::string& amz_date, const std::string& scope,
                         const std::string& canonical_request);
/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
std::string signingKey(const std::string& secret, const std::string& date,
                       const std::string& region, const std::string& service);
std::string hmacSha256(std::string_view key, std::string_view data);  // raw bytes
std::string toHex(std::string_view raw);

/// Header signing: adds x-amz-date (and x-amz-security-token when the credentials carry one)
/// to `request.headers`, signs, and returns the Authorization value. The caller adds
/// `authorization` to the headers it sends.
Signature signHeaders(Request& request, const Credentials& credentials, const std::string& region,
                      const std::string& service, std::chrono::system_clock::time_point now);

/// Query signing (a presigned URL): adds the X-Amz-* parameters, including X-Amz-Signature, to
/// `request.query`. The payload is UNSIGNED-PAYLOAD.
Signature signQuery(Request& request, const Credentials& credentials, const std::string& region,
                    const std::string& service, std::chrono::system_clock::time_point now,
                    std::chrono::seconds expires);

/// The canonical query string for `query` (sorted, encoded), as sent on the wire too.
std::string canonicalQuery(const Pairs& query);

}  // namespace kscribe::sigv4
