#pragma once
// Decorators that count the proxy's traffic into the kscribe metrics without the proxy knowing of
// them (proxy/ does not depend on agent/): MetricsTap wraps the recorder's Tap and counts requests
// by agent, tier and status, latency, body bytes and refusals; MetricsAttribution wraps the
// AttributionSource and counts hits, misses and unavailable lookups. Install both in the daemon:
//   options.tap = &metrics_tap;  options.attribution = &metrics_attribution;

#include <chrono>
#include <functional>

#include "agent/metrics.h"
#include "proxy/attribution.h"
#include "proxy/tap.h"

namespace kscribe {

/// Counts every exchange, then passes it to `inner` (may be null: count only).
class MetricsTap : public proxy::Tap {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  MetricsTap(
      proxy::Tap* inner, metrics::KscribeMetrics& metrics,
      Clock clock = [] { return std::chrono::steady_clock::now(); });

  Begin begin(const proxy::ConnectionInfo& connection, const proxy::RequestHead& request) override;
  void refused(const proxy::ConnectionInfo& connection, const proxy::RequestHead& request,
               unsigned status, std::string_view message) override;

 private:
  proxy::Tap* inner_;
  metrics::KscribeMetrics& metrics_;
  Clock clock_;
};

/// Counts attribution results, then returns `inner`'s (null inner: every lookup unavailable).
class MetricsAttribution : public proxy::AttributionSource {
 public:
  MetricsAttribution(proxy::AttributionSource* inner, metrics::KscribeMetrics& metrics)
      : inner_(inner), metrics_(metrics) {}
  std::shared_ptr<const proxy::Attribution> lookup(int accepted_fd) override;

 private:
  proxy::AttributionSource* inner_;
  metrics::KscribeMetrics& metrics_;
};

/// The agent label for a connection: its agent name, or "unauthenticated" when it has none.
std::string_view agentLabel(const proxy::ConnectionInfo& connection);

}  // namespace kscribe
