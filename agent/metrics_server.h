#pragma once
// The metrics and health listener (metrics.address:metrics.port, plain HTTP): /metrics in the
// Prometheus text format, /healthz (liveness) and /readyz (readiness), 404 otherwise. It runs on
// its own thread and io_context so a scrape never competes with the proxy's strands, and a busy
// proxy never delays a probe. Beast stays in the .cc.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace kscribe {

namespace metrics {
class Registry;
}
struct Config;

/// Liveness and readiness conditions, registered by the parts that know them. Thread-safe.
class HealthChecks {
 public:
  /// Returns "" when healthy, else one line saying why not. Called on the metrics thread: it must
  /// be thread-safe and quick (no I/O that can hang).
  using Check = std::function<std::string()>;

  /// /readyz fails while `check` reports a problem.
  void addReadiness(std::string name, Check check);
  /// /healthz fails while `check` reports a problem (the probe restarts the pod: use sparingly).
  void addLiveness(std::string name, Check check);
  /// A readiness condition its owner flips: not ready with `reason` until set ok. One line, e.g.
  /// health().setCondition("proxy", true) once the listener is bound.
  void setCondition(const std::string& name, bool ok, std::string reason = "");
  /// Drops every check and condition (tests; a daemon restart in-process).
  void clear();

  struct Result {
    bool ok = true;
    std::string text;  // one line per check: "[+]name ok" or "[-]name failed: why"
  };
  Result ready() const;
  Result live() const;

 private:
  struct Condition {
    bool ok = false;
    std::string reason;
  };
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, Check>> readiness_;
  std::vector<std::pair<std::string, Check>> liveness_;
  std::map<std::string, Condition> conditions_;
};

/// The process-wide checks /healthz and /readyz report.
HealthChecks& health();

struct MetricsServerOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0: pick one (see port())
  // A scraper and two kubelet probes need a handful; beyond the cap new connections are closed at
  // once so a misbehaving client cannot hold memory or descriptors.
  std::size_t max_connections = 32;
  // Reading a request and writing its response each complete within this; an idle keep-alive
  // connection is closed after it.
  std::chrono::milliseconds timeout{10'000};
};

/// The listener. Construct (binds), start(), stop() (also on destruction).
class MetricsServer {
 public:
  /// Binds the listener. Throws std::runtime_error naming the address and the error.
  MetricsServer(MetricsServerOptions options, metrics::Registry& registry, HealthChecks& health);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  std::uint16_t port() const;
  /// Starts serving on a thread of its own; returns at once.
  void start();
  /// Closes the listener and every connection and joins the thread. Idempotent.
  void stop();
  std::size_t activeConnections() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

/// Liveness of an event loop: a timer on `io` beats every `interval`; the check fails when the
/// last beat is older than `stale_after` (the loop is blocked or dead). Register check() with
/// HealthChecks::addLiveness; keep the watchdog alive while `io` runs.
class LoopWatchdog {
 public:
  LoopWatchdog(boost::asio::io_context& io, std::chrono::milliseconds interval,
               std::chrono::milliseconds stale_after);
  ~LoopWatchdog();
  LoopWatchdog(const LoopWatchdog&) = delete;
  LoopWatchdog& operator=(const LoopWatchdog&) = delete;
  std::string check() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
  std::chrono::milliseconds stale_after_;
};

/// The metrics listener as `kscribe serve` runs it, with the checks kscribe registers itself.
class MetricsRuntime {
 public:
  MetricsRuntime(std::unique_ptr<LoopWatchdog> watchdog, std::unique_ptr<MetricsServer> server);
  /// Stops the listener, then drops the checks (they may point at parts being destroyed).
  ~MetricsRuntime();
  std::uint16_t port() const { return server_->port(); }

 private:
  std::unique_ptr<LoopWatchdog> watchdog_;
  std::unique_ptr<MetricsServer> server_;
};

/// Readiness conditions the daemon registers as not ready; their owners set them ok:
/// health().setCondition(kReadyProxy, true) once the proxy listener is bound, and
/// health().setCondition(kReadyAttribution, true) once the BPF program is attached (registered
/// only with attribution: required).
inline constexpr const char* kReadyProxy = "proxy";
inline constexpr const char* kReadyAttribution = "attribution";

/// Starts the listener when metrics.enabled (else returns null). Registers in health(): the
/// conditions above; "recorder", ready while the session and audit directories are writable; and
/// the liveness of `loop` (the daemon's event loop). Throws ConfigError (metrics.port) when the
/// address cannot be bound.
std::unique_ptr<MetricsRuntime> startMetrics(const Config& config, boost::asio::io_context& loop);

}  // namespace kscribe
