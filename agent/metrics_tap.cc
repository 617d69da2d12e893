#include "agent/metrics_tap.h"

#include "agent/api_request.h"
#include "agent/tier.h"

namespace kscribe {

std::string_view agentLabel(const proxy::ConnectionInfo& connection) {
  return connection.agent.empty() ? std::string_view("unauthenticated")
                                  : std::string_view(connection.agent);
}

namespace {

unsigned tierOf(std::string_view method, std::string_view target, bool upgrade,
                std::string_view patch_body = {}) {
  return static_cast<unsigned>(
      classify(method, parseApiRequest(method, target), upgrade, patch_body));
}

unsigned tierOf(const proxy::RequestHead& request) {
  return tierOf(request.method, request.target, request.upgrade);
}

class MetricsExchange : public proxy::ExchangeTap {
 public:
  MetricsExchange(std::unique_ptr<proxy::ExchangeTap> inner, const MetricsTap::Series& series,
                  const MetricsTap::Clock& clock, const proxy::ConnectionInfo& connection,
                  const proxy::RequestHead& request)
      : inner_(std::move(inner)),
        series_(series),
        clock_(clock),
        start_(clock()),
        agent_(agentLabel(connection)),
        patch_(request.method == "PATCH") {
    // Only a PATCH's tier waits on its body; every other tier is known now, and the request
    // line need not be kept.
    if (patch_) {
      target_ = request.target;
      upgrade_ = request.upgrade;
    } else {
      tier_ = static_cast<int>(tierOf(request));
    }
  }

  ~MetricsExchange() override {
    if (!done_) finish(0);  // neither end() nor error(): count it as failed rather than lose it
  }

  void requestBody(std::span<const char> chunk) override {
    series_.request_bytes.inc(chunk.size());
    // The tier of a PATCH depends on its body (rollout restart is OPERATE): keep the little the
    // classifier looks at, so the tier here is the one the recorder writes.
    if (patch_ && patch_body_.size() + chunk.size() <= kMaxRestartPatchSize)
      patch_body_.append(chunk.data(), chunk.size());
    else
      patch_too_big_ = patch_too_big_ || patch_;
    if (inner_) inner_->requestBody(chunk);
  }
  void requestEnd() override {
    if (inner_) inner_->requestEnd();
  }
  void responseHead(const proxy::ResponseHead& head) override {
    status_ = head.status;
    if (inner_) inner_->responseHead(head);
  }
  void responseBody(std::span<const char> chunk) override {
    series_.response_bytes.inc(chunk.size());
    if (inner_) inner_->responseBody(chunk);
  }
  void upgraded() override {
    observeDuration();  // an exec session's length is not the API's latency
    if (inner_) inner_->upgraded();
  }
  void end() override {
    finish(status_);
    if (inner_) inner_->end();
  }
  void error(std::string_view what) override {
    finish(0);
    if (inner_) inner_->error(what);
  }

 private:
  unsigned tier() {
    if (tier_ < 0)
      tier_ = static_cast<int>(
          tierOf("PATCH", target_, upgrade_, patch_too_big_ ? std::string_view() : patch_body_));
    return static_cast<unsigned>(tier_);
  }
  void observeDuration() {
    if (observed_) return;
    observed_ = true;
    const std::chrono::duration<double> d = clock_() - start_;
    series_.duration(tier()).observe(d.count());
  }
  void finish(unsigned status) {
    done_ = true;
    observeDuration();
    series_.metrics.request(agent_, tier(), status).inc();
  }

  std::unique_ptr<proxy::ExchangeTap> inner_;
  const MetricsTap::Series& series_;
  const MetricsTap::Clock& clock_;
  std::chrono::steady_clock::time_point start_;
  std::string agent_;
  int tier_ = -1;  // computed once the body hint is known
  bool patch_;
  bool upgrade_ = false;  // PATCH only, with target_
  std::string target_;
  std::string patch_body_;
  bool patch_too_big_ = false;
  unsigned status_ = 0;
  bool observed_ = false;
  bool done_ = false;
};

}  // namespace

MetricsTap::Series::Series(metrics::KscribeMetrics& m)
    : metrics(m),
      request_bytes(m.proxied_bytes.labels({"request"})),
      response_bytes(m.proxied_bytes.labels({"response"})) {
  for (unsigned t = 0; t < durations.size(); ++t) {
    const char label[2] = {static_cast<char>('0' + t), 0};
    durations[t] = &m.request_duration.labels({std::string_view(label, 1)});
  }
}

metrics::Histogram& MetricsTap::Series::duration(unsigned tier) const {
  return *durations[tier < durations.size() ? tier : durations.size() - 1];
}

MetricsTap::MetricsTap(proxy::Tap* inner, metrics::KscribeMetrics& metrics, Clock clock)
    : inner_(inner), metrics_(metrics), series_(metrics), clock_(std::move(clock)) {}

proxy::Tap::Begin MetricsTap::begin(const proxy::ConnectionInfo& connection,
                                    const proxy::RequestHead& request) {
  Begin b;
  if (inner_) b = inner_->begin(connection, request);
  if (b.retry_after.count() > 0) return b;  // counted when it is answered
  if (b.refusal) {
    // Refused by the recorder (it cannot record): answered, never forwarded.
    metrics_.request(agentLabel(connection), tierOf(request), b.refusal->status).inc();
    metrics_.proxyRefusal(b.refusal->status).inc();
    return b;
  }
  b.tap = std::make_unique<MetricsExchange>(std::move(b.tap), series_, clock_, connection, request);
  return b;
}

void MetricsTap::refused(const proxy::ConnectionInfo& connection, const proxy::RequestHead& request,
                         unsigned status, std::string_view message) {
  metrics_.request(agentLabel(connection), tierOf(request), status).inc();
  metrics_.proxyRefusal(status).inc();
  if (inner_) inner_->refused(connection, request, status, message);
}

}  // namespace kscribe
