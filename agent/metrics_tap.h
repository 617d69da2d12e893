#pragma once
// Counts the proxy's traffic into the kscribe metrics without the proxy knowing of them (proxy/
// does not depend on agent/): MetricsTap wraps the recorder's Tap and counts requests by agent,
// tier and status, latency, body bytes and refusals. Install it in the daemon:
//   MetricsTap metrics_tap(&recorder, metrics::get());  options.tap = &metrics_tap;
// (Attribution results are counted by the attribution sources themselves, agent/attribution.cc.)

#include <array>
#include <chrono>
#include <functional>

#include "agent/metrics.h"
#include "proxy/tap.h"

namespace kscribe {

/// Counts every exchange, then passes it to `inner` (may be null: count only).
class MetricsTap : public proxy::Tap {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  /// The series every exchange touches, looked up once (a lookup takes the family's lock).
  struct Series {
    explicit Series(metrics::KscribeMetrics& m);
    metrics::Histogram& duration(unsigned tier) const;
    metrics::KscribeMetrics& metrics;
    metrics::Counter& request_bytes;
    metrics::Counter& response_bytes;
    std::array<metrics::Histogram*, 5> durations{};  // by tier
  };
  MetricsTap(
      proxy::Tap* inner, metrics::KscribeMetrics& metrics,
      Clock clock = [] { return std::chrono::steady_clock::now(); });

  Begin begin(const proxy::ConnectionInfo& connection, const proxy::RequestHead& request) override;
  void refused(const proxy::ConnectionInfo& connection, const proxy::RequestHead& request,
               unsigned status, std::string_view message) override;

 private:
  proxy::Tap* inner_;
  metrics::KscribeMetrics& metrics_;
  Series series_;
  Clock clock_;
};

/// The agent label for a connection: its agent name, or "unauthenticated" when it has none.
std::string_view agentLabel(const proxy::ConnectionInfo& connection);

}  // namespace kscribe
