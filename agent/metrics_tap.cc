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
  MetricsExchange(std::unique_ptr<proxy::ExchangeTap> inner, metrics::KscribeMetrics& m,
                  const MetricsTap::Clock& clock, const proxy::ConnectionInfo& connection,
                  const proxy::RequestHead& request)
      : inner_(std::move(inner)),
        m_(m),
        clock_(clock),
        start_(clock()),
        agent_(agentLabel(connection)),
        method_(request.method),
        target_(request.target),
        upgrade_(request.upgrade),
        patch_(request.method == "PATCH"),
        request_bytes_(m.proxied_bytes.labels({"request"})),
        response_bytes_(m.proxied_bytes.labels({"response"})) {}

  ~MetricsExchange() override {
    if (!done_) finish(0);  // neither end() nor error(): count it as failed rather than lose it
  }

  void requestBody(std::span<const char> chunk) override {
    request_bytes_.inc(chunk.size());
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
    response_bytes_.inc(chunk.size());
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
          tierOf(method_, target_, upgrade_,
                 patch_ && !patch_too_big_ ? std::string_view(patch_body_) : std::string_view()));
    return static_cast<unsigned>(tier_);
  }
  void observeDuration() {
    if (observed_) return;
    observed_ = true;
    const std::chrono::duration<double> d = clock_() - start_;
    char t[4] = {static_cast<char>('0' + tier()), 0};
    m_.request_duration.labels({std::string_view(t, 1)}).observe(d.count());
  }
  void finish(unsigned status) {
    done_ = true;
    observeDuration();
    m_.request(agent_, tier(), status).inc();
  }

  std::unique_ptr<proxy::ExchangeTap> inner_;
  metrics::KscribeMetrics& m_;
  const MetricsTap::Clock& clock_;
  std::chrono::steady_clock::time_point start_;
  std::string agent_;
  std::string method_;
  std::string target_;
  bool upgrade_;
  int tier_ = -1;  // computed once the body hint is known
  bool patch_;
  std::string patch_body_;
  bool patch_too_big_ = false;
  metrics::Counter& request_bytes_;
  metrics::Counter& response_bytes_;
  unsigned status_ = 0;
  bool observed_ = false;
  bool done_ = false;
};

}  // namespace

MetricsTap::MetricsTap(proxy::Tap* inner, metrics::KscribeMetrics& metrics, Clock clock)
    : inner_(inner), metrics_(metrics), clock_(std::move(clock)) {}

proxy::Tap::Begin MetricsTap::begin(const proxy::ConnectionInfo& connection,
                                    const proxy::RequestHead& request) {
  Begin b;
  if (inner_) b = inner_->begin(connection, request);
  if (b.refusal) {
    // Refused by the recorder (it cannot record): answered, never forwarded.
    metrics_.request(agentLabel(connection), tierOf(request), b.refusal->status).inc();
    metrics_.proxyRefusal(b.refusal->status).inc();
    return b;
  }
  b.tap =
      std::make_unique<MetricsExchange>(std::move(b.tap), metrics_, clock_, connection, request);
  return b;
}

void MetricsTap::refused(const proxy::ConnectionInfo& connection, const proxy::RequestHead& request,
                         unsigned status, std::string_view message) {
  metrics_.request(agentLabel(connection), tierOf(request), status).inc();
  metrics_.proxyRefusal(status).inc();
  if (inner_) inner_->refused(connection, request, status, message);
}

}  // namespace kscribe
