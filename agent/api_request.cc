#include "agent/api_request.h"

#include <array>
#include <vector>

namespace kscribe {
namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Go's net/http hands the API server the percent-decoded path, so "secret%73" is "secrets".
bool percentDecode(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hexValue(in[i + 1]);
    const int lo = hexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

// Query parameter value by name (first occurrence); percent-decoding is not needed for the
// values we look at ("true", "1", "All").
std::string_view queryParam(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      return eq == std::string_view::npos ? std::string_view("") : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

bool hasParam(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (pair.substr(0, pair.find('=')) == key) return true;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

// Subresources of a namespace itself (requestinfo.go: namespaceSubresources).
bool isNamespaceSubresource(std::string_view s) { return s == "status" || s == "finalize"; }

}  // namespace

ApiRequest parseApiRequest(std::string_view method, std::string_view target) {
  ApiRequest r;
  std::string_view path = target;
  if (const auto q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    r.query = std::string(target.substr(q + 1));
  }
  if (const auto hash = path.find('#'); hash != std::string_view::npos) path = path.substr(0, hash);

  std::string decoded;
  if (!percentDecode(path, decoded)) r.malformed = true;

  // Split and clean like path.Clean: drop empty and "." segments, resolve "..".
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= decoded.size()) {
    const auto slash = decoded.find('/', start);
    const auto end = slash == std::string::npos ? decoded.size() : slash;
    std::string seg = decoded.substr(start, end - start);
    if (seg == "..") {
      if (parts.empty()) {
        r.malformed = true;
      } else {
        parts.pop_back();
      }
    } else if (!seg.empty() && seg != ".") {
      parts.push_back(std::move(seg));
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }

  const std::string_view watch_param = queryParam(r.query, "watch");
  const bool watch_query = watch_param == "true" || watch_param == "1";
  r.dry_run = hasParam(r.query, "dryRun") && !queryParam(r.query, "dryRun").empty();

  std::string lower_method(method);
  for (char& c : lower_method) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);

  // Non-resource requests: anything not under /api or /apis, and discovery.
  std::size_t i = 0;
  if (parts.empty() || (parts[0] != "api" && parts[0] != "apis")) {
    r.verb = lower_method;
    return r;
  }
  if (parts[0] == "api") {
    if (parts.size() < 3) {  // /api, /api/v1: discovery
      r.verb = lower_method;
      if (parts.size() == 2) r.api_version = parts[1];
      return r;
    }
    r.api_version = parts[1];
    i = 2;
  } else {
    if (parts.size() < 4) {  // /apis, /apis/g, /apis/g/v: discovery
      r.verb = lower_method;
      if (parts.size() >= 2) r.api_group = parts[1];
      if (parts.size() == 3) r.api_version = parts[2];
      return r;
    }
    r.api_group = parts[1];
    r.api_version = parts[2];
    i = 3;
  }
  r.is_resource = true;

  bool legacy_watch = false;
  bool legacy_proxy = false;
  if (i < parts.size() && parts[i] == "watch") {  // deprecated /api/v1/watch/... prefix
    legacy_watch = true;
    ++i;
  } else if (i < parts.size() && parts[i] == "proxy") {  // deprecated /api/v1/proxy/...
    legacy_proxy = true;
    ++i;
  }

  std::vector<std::string_view> rest;
  for (; i < parts.size(); ++i) rest.emplace_back(parts[i]);

  if (rest.size() >= 2 && rest[0] == "namespaces") {
    r.namespace_name = std::string(rest[1]);
    if (rest.size() > 2 && !isNamespaceSubresource(rest[2])) {
      rest.erase(rest.begin(), rest.begin() + 2);
    }
  }
  if (!rest.empty()) r.resource = std::string(rest[0]);
  if (rest.size() >= 2) r.name = std::string(rest[1]);
  if (rest.size() >= 3) r.subresource = std::string(rest[2]);

  if (legacy_proxy) {
    r.verb = "proxy";
    if (r.subresource.empty()) r.subresource = "proxy";
    return r;
  }
  if (lower_method == "get" || lower_method == "head" || lower_method == "options") {
    if (legacy_watch || watch_query) {
      r.verb = "watch";
      r.watch = true;
    } else if (r.name.empty()) {
      r.verb = "list";
    } else {
      r.verb = "get";
    }
  } else if (lower_method == "post") {
    r.verb = "create";
  } else if (lower_method == "put") {
    r.verb = "update";
  } else if (lower_method == "patch") {
    r.verb = "patch";
  } else if (lower_method == "delete") {
    r.verb = r.name.empty() ? "deletecollection" : "delete";
  } else {
    r.verb = lower_method;
  }
  const std::string_view sub = r.subresource;
  if (sub == "exec" || sub == "attach" || sub == "portforward") r.verb = "connect";
  if (sub == "proxy") r.verb = "proxy";
  return r;
}

bool pathMayHoldSecret(const ApiRequest& request) {
  if (request.malformed) return true;
  if (!request.is_resource) return false;
  // Core secrets; a resource named "secrets" in any other group is treated alike (cheap caution).
  return request.resource == "secrets";
}

bool pathMayHoldCredential(const ApiRequest& request) {
  if (pathMayHoldSecret(request)) return true;
  if (!request.is_resource) return false;
  if (request.resource == "serviceaccounts" && request.subresource == "token") return true;
  if (request.api_group == "authentication.k8s.io") return true;  // tokenreviews, ...
  return false;
}

}  // namespace kscribe
