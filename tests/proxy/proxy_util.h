#pragma once
// Test support for the proxy: certificates made with the openssl CLI, a blocking TLS client
// (raw bytes on a real socket) and a small real HTTPS upstream with scripted routes.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kscribe::test {

/// A CA, a server certificate (localhost, 127.0.0.1), agent client certificates, and a second
/// CA ("rogue") whose certificates kscribe must not accept. Created once per process.
struct Pki {
  std::filesystem::path dir;
  std::filesystem::path ca_crt, ca_key, server_crt, server_key;
  std::filesystem::path alice_crt, alice_key;        // spiffe://kscribe.local/agent/alice
  std::filesystem::path other_td_crt, other_td_key;  // spiffe://elsewhere/agent/alice
  std::filesystem::path rogue_crt, rogue_key;        // alice, but from another CA
  std::filesystem::path upstream_ca, upstream_crt, upstream_key;  // the fake API server
  static const Pki& get();
};

/// Runs a shell command; throws if it fails.
void run(const std::string& command);
std::string readFile(const std::filesystem::path& path);

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool complete = false;
  std::string header(const std::string& name) const;
};

/// A blocking TLS client on a real socket. Reads time out after `timeout`.
class TlsClient {
 public:
  struct Options {
    std::filesystem::path cert, key;
    std::vector<std::string> alpn;
    std::chrono::milliseconds timeout{5'000};
  };
  TlsClient(std::uint16_t port, Options options);
  TlsClient(std::uint16_t port) : TlsClient(port, Options{}) {}
  ~TlsClient();
  bool ok() const { return ssl_ != nullptr; }
  std::string alpn() const;
  bool send(const std::string& data);
  /// Reads one response. `head_request`: no body follows.
  Response read(bool head_request = false);
  /// Reads up to n bytes (fewer on close/timeout); empty on close.
  std::string readSome(std::size_t n);
  /// True if the server closed the connection (close_notify or EOF) within the timeout.
  bool closedByPeer();
  void setTimeout(std::chrono::milliseconds t);
  int fd() const { return fd_; }

 private:
  bool fill();
  int fd_ = -1;
  void* ctx_ = nullptr;
  void* ssl_ = nullptr;
  std::string buf_;
  bool eof_ = false;
};

/// What the upstream saw of one request.
struct SeenRequest {
  std::string method, target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool has(const std::string& name) const;
  std::string get(const std::string& name) const;
};

/// A real HTTPS server on loopback with the test routes (see proxy_util.cc).
class Upstream {
 public:
  Upstream();
  ~Upstream();
  std::uint16_t port() const { return port_; }
  std::vector<SeenRequest> seen();
  SeenRequest last();
  std::atomic<std::uint64_t> big_bytes_sent{0};
  std::atomic<int> connections{0};
  /// /watch sends its second event once this is released.
  void releaseWatch();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::uint16_t port_ = 0;
};

}  // namespace kscribe::test
