#pragma once
// The body tee. For every exchange the relay forwards, a Tap sees exactly the bytes forwarded:
// request head, request body chunks, response head, response body chunks, then end or error.
// Modelled on Envoy's tap filter: calls are synchronous on the connection's strand, so a tap must
// copy what it keeps, never block, never hold more than its own cap, and never throw (the relay
// catches and disables a tap that does, and keeps relaying).

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/attribution.h"

namespace kscribe::proxy {

using Headers = std::vector<std::pair<std::string, std::string>>;

/// Who really connected: the credential's agent checked against the workload (agent/identity).
struct VerifiedIdentity {
  std::string verification;  // verified | unbound | unverified (denied ones never reach a tap)
  std::string reason;
  std::string workload;  // "pod:<uid>" | "container:<id>" | "cgroup:<path>" | "host:" | "unknown:"
  std::string pod_namespace;
  std::string pod_name;
  std::string pod_service_account;
};

/// The authenticated connection an exchange arrived on.
struct ConnectionInfo {
  std::uint64_t id = 0;     // unique per kscribe process
  std::string agent;        // agent name from the client certificate or token
  std::string spiffe_id;    // certificate URI SAN, or the id the token maps to
  std::string auth_method;  // "certificate" | "token"
  int fd = -1;              // the accepted socket (valid while the connection lives)
  std::string peer_address;
  std::uint16_t peer_port = 0;
  std::shared_ptr<const Attribution> attribution;  // never null
  std::chrono::system_clock::time_point accepted_at;
  std::shared_ptr<const VerifiedIdentity> identity;  // null: no identity check configured
};

/// Request line and headers as received, credential headers (Authorization, Cookie,
/// Proxy-Authorization) already removed.
struct RequestHead {
  std::string method;
  std::string target;  // path and query as sent ("/api/v1/pods?watch=true")
  Headers headers;
  bool upgrade = false;  // Connection: Upgrade (exec, attach, port-forward)
  std::string_view header(std::string_view name) const;
};

struct ResponseHead {
  unsigned status = 0;
  Headers headers;
  std::string_view header(std::string_view name) const;
};

/// Why an exchange was refused before forwarding (e.g. the recorder cannot record: 503).
struct Refusal {
  unsigned status = 503;
  std::string reason;  // Kubernetes Status reason, e.g. "ServiceUnavailable"
  std::string message;
};

/// One request/response exchange. Methods are called in this order: requestBody* ->
/// responseHead -> (responseBody* | upgraded) -> end, or error at any point after begin.
class ExchangeTap {
 public:
  virtual ~ExchangeTap() = default;
  virtual void requestBody(std::span<const char> chunk) = 0;
  virtual void requestEnd() {}
  virtual void responseHead(const ResponseHead& head) = 0;
  virtual void responseBody(std::span<const char> chunk) = 0;
  /// The connection switched protocols (101); both directions are relayed unrecorded until close.
  virtual void upgraded() {}
  /// The exchange completed normally.
  virtual void end() = 0;
  /// The exchange failed midway (upstream reset, client gone, timeout). No end() follows.
  virtual void error(std::string_view what) = 0;
};

/// Binds a credential to the workload that presents it. Called once per connection and agent,
/// before that agent's first exchange on the connection (so later requests cost nothing); it may
/// block briefly (a pod not yet known is looked up once).
class IdentityCheck {
 public:
  virtual ~IdentityCheck() = default;
  struct Result {
    std::shared_ptr<const VerifiedIdentity> identity;
    std::optional<Refusal> refusal;  // set: answer this (403) and audit it, forward nothing
  };
  virtual Result check(const ConnectionInfo& connection) = 0;
};

/// Creates one ExchangeTap per exchange. May refuse the exchange (returns a Refusal) before
/// anything is forwarded; the relay answers with that status and a Kubernetes Status body.
class Tap {
 public:
  virtual ~Tap() = default;
  struct Begin {
    std::unique_ptr<ExchangeTap> tap;  // null: this exchange is not tapped
    std::optional<Refusal> refusal;
    // Nonzero: the tap is busy (its writer is behind) and asks to be asked again after this
    // long; the relay waits without holding its thread (backpressure, not an error), within a
    // bound. Neither tap nor refusal is set then.
    std::chrono::milliseconds retry_after{0};
  };
  virtual Begin begin(const ConnectionInfo& connection, const RequestHead& request) = 0;
  /// An exchange refused by the proxy itself (bad credential, limit, identity mismatch), so it can
  /// be audited. `status` is what the client got.
  virtual void refused(const ConnectionInfo& connection, const RequestHead& request,
                       unsigned status, std::string_view message) = 0;
};

}  // namespace kscribe::proxy
