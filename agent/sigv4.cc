#include "agent/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <stdexcept>

#include "agent/durable_file.h"

namespace kscribe::sigv4 {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Trims the value and collapses runs of spaces to one, as the canonical form requires (the suite's
// get-header-value-trim and get-header-value-multiline vectors: quoted values too).
std::string canonicalValue(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

std::string scopeOf(const std::string& amz_date, const std::string& region,
                    const std::string& service) {
  return amz_date.substr(0, 8) + "/" + region + "/" + service + "/aws4_request";
}

}  // namespace

std::string toHex(std::string_view raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

std::string hmacSha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len)) {
    throw std::runtime_error("sigv4: HMAC-SHA256 failed");
  }
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string uriEncode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

std::string amzDate(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string canonicalQuery(const Pairs& query) {
  std::vector<std::pair<std::string, std::string>> enc;
  enc.reserve(query.size());
  for (const auto& [k, v] : query) enc.emplace_back(uriEncode(k, false), uriEncode(v, false));
  std::sort(enc.begin(), enc.end());  // by encoded name, then value (byte order)
  std::string out;
  for (const auto& [k, v] : enc) {
    if (!out.empty()) out.push_back('&');
    out += k;
    out.push_back('=');
    out += v;
  }
  return out;
}

std::string canonicalRequest(const Request& r, std::string* signed_headers_out) {
  // Same-named headers join with ',' in the order given (get-header-key-duplicate).
  std::map<std::string, std::string> headers;
  for (const auto& [name, value] : r.headers) {
    auto key = lower(name);
    auto v = canonicalValue(value);
    auto [it, fresh] = headers.emplace(key, v);
    if (!fresh) it->second += "," + v;
  }
  std::string canonical_headers, signed_headers;
  for (const auto& [k, v] : headers) {
    canonical_headers += k + ":" + v + "\n";
    if (!signed_headers.empty()) signed_headers.push_back(';');
    signed_headers += k;
  }
  if (signed_headers_out) *signed_headers_out = signed_headers;
  std::string path = r.path.empty() ? "/" : r.path;
  return r.method + "\n" + uriEncode(path, true) + "\n" + canonicalQuery(r.query) + "\n" +
         canonical_headers + "\n" + signed_headers + "\n" + r.payload_hash;
}

std::string stringToSign(const std::string& amz_date, const std::string& scope,
                         const std::string& canonical_request) {
  return "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" +
         durable::sha256Hex(canonical_request);
}

std::string signingKey(const std::string& secret, const std::string& date,
                       const std::string& region, const std::string& service) {
  std::string k = hmacSha256("AWS4" + secret, date);
  k = hmacSha256(k, region);
  k = hmacSha256(k, service);
  return hmacSha256(k, "aws4_request");
}

Signature signHeaders(Request& r, const Credentials& c, const std::string& region,
                      const std::string& service, std::chrono::system_clock::time_point now) {
  const std::string date = amzDate(now);
  r.headers.emplace_back("x-amz-date", date);
  if (!c.session_token.empty()) r.headers.emplace_back("x-amz-security-token", c.session_token);
  Signature s;
  s.canonical_request = canonicalRequest(r, &s.signed_headers);
  const std::string scope = scopeOf(date, region, service);
  s.string_to_sign = stringToSign(date, scope, s.canonical_request);
  s.signature = toHex(hmacSha256(
      signingKey(c.secret_access_key, date.substr(0, 8), region, service), s.string_to_sign));
  s.authorization = "AWS4-HMAC-SHA256 Credential=" + c.access_key_id + "/" + scope +
                    ", SignedHeaders=" + s.signed_headers + ", Signature=" + s.signature;
  return s;
}

Signature signQuery(Request& r, const Credentials& c, const std::string& region,
                    const std::string& service, std::chrono::system_clock::time_point now,
                    std::chrono::seconds expires) {
  const std::string date = amzDate(now);
  const std::string scope = scopeOf(date, region, service);
  r.payload_hash = std::string(kUnsignedPayload);
  std::string signed_headers;
  canonicalRequest(r, &signed_headers);  // only for the signed header list
  r.query.emplace_back("X-Amz-Algorithm", "AWS4-HMAC-SHA256");
  r.query.emplace_back("X-Amz-Credential", c.access_key_id + "/" + scope);
  r.query.emplace_back("X-Amz-Date", date);
  r.query.emplace_back("X-Amz-Expires", std::to_string(expires.count()));
  if (!c.session_token.empty()) r.query.emplace_back("X-Amz-Security-Token", c.session_token);
  r.query.emplace_back("X-Amz-SignedHeaders", signed_headers);
  Signature s;
  s.canonical_request = canonicalRequest(r, &s.signed_headers);
  s.string_to_sign = stringToSign(date, scope, s.canonical_request);
  s.signature = toHex(hmacSha256(
      signingKey(c.secret_access_key, date.substr(0, 8), region, service), s.string_to_sign));
  r.query.emplace_back("X-Amz-Signature", s.signature);
  return s;
}

}  // namespace kscribe::sigv4
