#pragma once
// The TLS-terminating Kubernetes API proxy: listener, authentication, HTTP/1.1 relay to one
// upstream API server, upgrades, limits and graceful shutdown. Beast and Asio stay behind the
// pimpl so that includers do not pay for them.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/attribution.h"
#include "proxy/tap.h"

namespace kscribe::proxy {

/// With UpstreamOptions::impersonate, requests carry `Impersonate-User: kscribe:agent:NAME`.
inline constexpr std::string_view kImpersonateUserPrefix = "kscribe:agent:";

/// The real API server and how to authenticate to it.
struct UpstreamOptions {
  std::string host;  // DNS name or IP literal (no brackets)
  std::string port = "443";
  std::string tls_server_name;  // overrides host for SNI and certificate verification
  std::string ca_pem;           // empty: the system trust store
  std::string client_cert_pem;  // client certificate chain (mTLS to the API server)
  std::string client_key_pem;
  std::string token;                 // static bearer token
  std::filesystem::path token_file;  // re-read every token_refresh (service account tokens rotate)
  std::chrono::milliseconds token_refresh{60'000};
  bool insecure_skip_tls_verify = false;
  std::chrono::milliseconds connect_timeout{5'000};    // TCP connect + TLS handshake; else 504
  std::chrono::milliseconds response_timeout{60'000};  // until response headers; else 504
  std::uint32_t max_idle_connections = 32;             // keep-alive pool size
  bool impersonate = false;
};

/// Hard limits on what clients may send; every refusal carries a Kubernetes Status body.
struct Limits {
  std::uint32_t max_connections = 4096;              // further accepts get 503 and close
  std::uint32_t max_header_size = 64 * 1024;         // whole request head; larger: 431
  std::uint32_t max_request_line = 16 * 1024;        // method + target + version; longer: 414
  std::chrono::milliseconds header_timeout{10'000};  // TLS handshake, then request head; else 408
  std::chrono::milliseconds idle_timeout{120'000};   // keep-alive wait, and request-body stalls
  std::chrono::milliseconds shutdown_grace{10'000};  // in-flight exchanges may finish within this
  std::chrono::milliseconds record_wait{10'000};     // a busy tap holds a request this long; 503
};

/// A bearer token's agent: the token is never stored, only its SHA-256 (lower-case hex).
struct AgentToken {
  std::string name;
  std::string token_sha256;
};

struct ServerOptions {
  std::string listen_address = "127.0.0.1";
  std::uint16_t listen_port = 0;    // 0: pick one (see Server::port())
  std::filesystem::path cert_file;  // server certificate chain (PEM)
  std::filesystem::path key_file;
  std::filesystem::path ca_file;  // verifies agent client certificates
  std::string trust_domain = "kscribe.local";
  std::vector<AgentToken> agents;
  UpstreamOptions upstream;
  Limits limits;
  unsigned threads = 0;                      // I/O threads; 0: one per CPU
  Tap* tap = nullptr;                        // may be null: nothing is tapped
  AttributionSource* attribution = nullptr;  // may be null: attribution is kUnavailable
  IdentityCheck* identity = nullptr;         // may be null: credentials are not bound to workloads
};

/// A start-up problem; `key` names the option ("tls.cert", "listen", "upstream", ...).
class StartupError : public std::runtime_error {
 public:
  StartupError(std::string key, const std::string& problem)
      : std::runtime_error(key + ": " + problem), key_(std::move(key)) {}
  const std::string& key() const { return key_; }

 private:
  std::string key_;
};

/// The proxy. Construct (loads certificates, binds), start(), later stop() and wait().
class Server {
 public:
  /// Loads certificates and binds the listener. Throws StartupError.
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// The bound port.
  std::uint16_t port() const;
  /// Starts the I/O threads; returns at once.
  void start();
  /// Graceful stop, callable from any thread: stop accepting, close idle connections, let
  /// in-flight exchanges finish within limits.shutdown_grace, then close the rest.
  void stop();
  /// Blocks until the I/O threads have finished (after stop()).
  void wait();
  /// Connections currently open (for tests and metrics).
  std::size_t activeConnections() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace kscribe::proxy
