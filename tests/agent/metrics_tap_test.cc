#include "agent/metrics_tap.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kscribe {
namespace {

using namespace std::chrono_literals;

// Records what reaches the wrapped tap, to check the decorator passes everything through.
struct Trace {
  std::vector<std::string> calls;
  bool refuse = false;
};

class TraceExchange : public proxy::ExchangeTap {
 public:
  explicit TraceExchange(Trace& t) : t_(t) {}
  void requestBody(std::span<const char> c) override {
    t_.calls.push_back("reqbody:" + std::string(c.data(), c.size()));
  }
  void responseHead(const proxy::ResponseHead& h) override {
    t_.calls.push_back("head:" + std::to_string(h.status));
  }
  void responseBody(std::span<const char> c) override {
    t_.calls.push_back("respbody:" + std::string(c.data(), c.size()));
  }
  void end() override { t_.calls.push_back("end"); }
  void error(std::string_view w) override { t_.calls.push_back("error:" + std::string(w)); }

 private:
  Trace& t_;
};

class TraceTap : public proxy::Tap {
 public:
  explicit TraceTap(Trace& t) : t_(t) {}
  Begin begin(const proxy::ConnectionInfo&, const proxy::RequestHead& r) override {
    t_.calls.push_back("begin:" + r.method + " " + r.target);
    Begin b;
    if (t_.refuse)
      b.refusal = proxy::Refusal{503, "ServiceUnavailable", "cannot record"};
    else
      b.tap = std::make_unique<TraceExchange>(t_);
    return b;
  }
  void refused(const proxy::ConnectionInfo&, const proxy::RequestHead&, unsigned status,
               std::string_view) override {
    t_.calls.push_back("refused:" + std::to_string(status));
  }

 private:
  Trace& t_;
};

struct Fixture : ::testing::Test {
  metrics::Registry registry;
  metrics::KscribeMetrics m{registry};
  std::chrono::steady_clock::time_point now{};
  Trace trace;
  TraceTap inner{trace};
  MetricsTap tap{&inner, m, [this] { return now; }};
  proxy::ConnectionInfo conn;
  Fixture() { conn.agent = "planner"; }

  static proxy::RequestHead req(std::string method, std::string target) {
    proxy::RequestHead r;
    r.method = std::move(method);
    r.target = std::move(target);
    return r;
  }
  void exchange(const proxy::RequestHead& r, unsigned status, std::string_view req_body,
                std::string_view resp_body, std::chrono::milliseconds took) {
    auto b = tap.begin(conn, r);
    ASSERT_TRUE(b.tap);
    if (!req_body.empty()) b.tap->requestBody({req_body.data(), req_body.size()});
    b.tap->requestEnd();
    now += took;
    b.tap->responseHead(proxy::ResponseHead{status, {}});
    if (!resp_body.empty()) b.tap->responseBody({resp_body.data(), resp_body.size()});
    b.tap->end();
  }
};

TEST_F(Fixture, CountsRequestsByAgentTierAndStatus) {
  exchange(req("GET", "/api/v1/namespaces/a/pods"), 200, "", "{\"items\":[]}", 3ms);
  exchange(req("GET", "/api/v1/namespaces/a/pods"), 200, "", "x", 30ms);
  exchange(req("GET", "/api/v1/namespaces/a/secrets/s"), 404, "", "", 1ms);
  exchange(req("POST", "/api/v1/namespaces/a/configmaps"), 201, "{\"a\":1}", "ok", 1ms);
  // A rollout restart patch is OPERATE (tier 1), as the recorder classifies it.
  exchange(
      req("PATCH", "/apis/apps/v1/namespaces/a/deployments/web"), 200,
      R"({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-01-01T00:00:00Z"}}}}})",
      "", 1ms);
  EXPECT_EQ(m.request("planner", 0, 200).value(), 2u);
  EXPECT_EQ(m.request("planner", 3, 404).value(), 1u);
  EXPECT_EQ(m.request("planner", 2, 201).value(), 1u);
  EXPECT_EQ(m.request("planner", 1, 200).value(), 1u);
  EXPECT_EQ(m.proxied_bytes.labels({"request"}).value(), 7u + 111u);
  EXPECT_EQ(m.proxied_bytes.labels({"response"}).value(), 12u + 1u + 2u);
  auto s = m.request_duration.labels({"0"}).snapshot();
  EXPECT_EQ(s.count, 2u);
  EXPECT_DOUBLE_EQ(s.sum, 0.033);
  EXPECT_EQ(s.cumulative[2], 1u);  // le=0.005: the 3ms one
  // Everything reached the inner tap, in order.
  EXPECT_EQ(trace.calls[0], "begin:GET /api/v1/namespaces/a/pods");
  EXPECT_EQ(trace.calls[1], "head:200");
  EXPECT_EQ(trace.calls[2], "respbody:{\"items\":[]}");
  EXPECT_EQ(trace.calls[3], "end");
}

TEST_F(Fixture, CountsErrorsRefusalsAndUnauthenticated) {
  auto b = tap.begin(conn, req("DELETE", "/api/v1/namespaces/a/pods/p"));
  b.tap->error("upstream reset");
  EXPECT_EQ(m.request("planner", 3, 0).value(), 1u);  // status="error"
  EXPECT_EQ(trace.calls.back(), "error:upstream reset");

  proxy::ConnectionInfo anon;
  tap.refused(anon, req("GET", "/api"), 401, "no credential");
  EXPECT_EQ(m.request("unauthenticated", 0, 401).value(), 1u);
  EXPECT_EQ(m.proxyRefusal(401).value(), 1u);
  EXPECT_EQ(trace.calls.back(), "refused:401");

  trace.refuse = true;  // the recorder cannot record: 503 before forwarding
  auto r = tap.begin(conn, req("GET", "/api/v1/pods"));
  EXPECT_FALSE(r.tap);
  ASSERT_TRUE(r.refusal);
  EXPECT_EQ(m.request("planner", 0, 503).value(), 1u);
  EXPECT_EQ(m.proxyRefusal(503).value(), 1u);
}

TEST_F(Fixture, CountsWithoutAnInnerTap) {
  MetricsTap alone(nullptr, m, [this] { return now; });
  auto b = alone.begin(conn, req("GET", "/version"));
  ASSERT_TRUE(b.tap);
  b.tap->responseHead(proxy::ResponseHead{200, {}});
  b.tap->end();
  EXPECT_EQ(m.request("planner", 0, 200).value(), 1u);
}

}  // namespace
}  // namespace kscribe
