#pragma once
// What a Kubernetes API request is, parsed from its method and target the way the API server's
// RequestInfoFactory does (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go), so the tier
// and the redactor agree with what the server will actually do.

#include <string>
#include <string_view>

namespace kscribe {

struct ApiRequest {
  std::string verb;  // get list watch create update patch delete deletecollection connect proxy
  std::string api_group;  // "" for core
  std::string api_version;
  std::string resource;  // "pods", "secrets", "" for non-resource URLs (/version, /apis, /openapi)
  std::string subresource;  // "exec", "log", "scale", "token", "eviction", "status", ...
  std::string namespace_name;
  std::string name;
  std::string query;  // raw query string without '?'
  bool watch = false;
  bool dry_run = false;
  bool is_resource = false;  // an /api or /apis resource path (not discovery, /version, ...)
  bool malformed = false;    // bad percent-encoding or ".." above the root: treat as unknown
};

/// Parses method and target ("/api/v1/namespaces/a/pods?watch=1"); never throws.
ApiRequest parseApiRequest(std::string_view method, std::string_view target);

/// True when a body of this request (either direction) may carry Secret values by its path:
/// the secrets resource, or a path we could not understand.
bool pathMayHoldSecret(const ApiRequest& request);

/// True when a body of this request may carry a credential by its path: ServiceAccount token
/// requests, TokenReviews, and anything pathMayHoldSecret says.
bool pathMayHoldCredential(const ApiRequest& request);

}  // namespace kscribe
