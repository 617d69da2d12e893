#include "agent/metrics.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "agent/bpf_abi.h"

namespace kscribe::metrics {
namespace {

TEST(Metrics, RendersTheExpositionFormat) {
  Registry r;
  auto& req = r.counter("demo_requests_total", "Requests.\nSecond line \\ with backslash.",
                        {"agent", "status"});
  req.labels({"bob", "200"}).inc(3);
  req.labels({"alice", "200"}).inc();
  req.labels({"a\"q\\b\nc", "500"}).inc(2);
  r.gauge("demo_open", "Open things.").get().set(-4);
  auto& h = r.histogram("demo_seconds", "Latency.", {"tier"}, {0.1, 1, 2.5});
  auto& h0 = h.labels({"0"});
  h0.observe(0.05);
  h0.observe(0.1);  // le is inclusive
  h0.observe(2);
  h0.observe(100);
  r.counter("demo_unlabelled_total", "Never incremented.").get();
  r.callback("demo_cb", "From a callback.", Type::kGauge, {"k"}).setSource([] {
    return std::vector<Sample>{{{"z"}, 1.5}, {{"a"}, 7}};
  });

  const std::string golden =
      "# HELP demo_requests_total Requests.\\nSecond line \\\\ with backslash.\n"
      "# TYPE demo_requests_total counter\n"
      "demo_requests_total{agent=\"a\\\"q\\\\b\\nc\",status=\"500\"} 2\n"
      "demo_requests_total{agent=\"alice\",status=\"200\"} 1\n"
      "demo_requests_total{agent=\"bob\",status=\"200\"} 3\n"
      "# HELP demo_open Open things.\n"
      "# TYPE demo_open gauge\n"
      "demo_open -4\n"
      "# HELP demo_seconds Latency.\n"
      "# TYPE demo_seconds histogram\n"
      "demo_seconds_bucket{tier=\"0\",le=\"0.1\"} 2\n"
      "demo_seconds_bucket{tier=\"0\",le=\"1\"} 2\n"
      "demo_seconds_bucket{tier=\"0\",le=\"2.5\"} 3\n"
      "demo_seconds_bucket{tier=\"0\",le=\"+Inf\"} 4\n"
      "demo_seconds_sum{tier=\"0\"} 102.15\n"
      "demo_seconds_count{tier=\"0\"} 4\n"
      "# HELP demo_unlabelled_total Never incremented.\n"
      "# TYPE demo_unlabelled_total counter\n"
      "demo_unlabelled_total 0\n"
      "# HELP demo_cb From a callback.\n"
      "# TYPE demo_cb gauge\n"
      "demo_cb{k=\"a\"} 7\n"
      "demo_cb{k=\"z\"} 1.5\n";
  EXPECT_EQ(r.render(), golden);
}

TEST(Metrics, FormatsSpecialValues) {
  std::string s;
  formatValue(s, std::numeric_limits<double>::infinity());
  s += ' ';
  formatValue(s, -std::numeric_limits<double>::infinity());
  s += ' ';
  formatValue(s, std::numeric_limits<double>::quiet_NaN());
  s += ' ';
  formatValue(s, 0.001);
  s += ' ';
  formatValue(s, 1e20);
  s += ' ';
  formatValue(s, -3);
  EXPECT_EQ(s, "+Inf -Inf NaN 0.001 1e+20 -3");
}

TEST(Metrics, HistogramWithoutLabelsAndBucketBoundaries) {
  Registry r;
  auto& h = r.histogram("h", "x", {}, {1, 2}).get();
  for (double v : {0.0, 1.0, 1.0000001, 2.0, 2.5, -1.0}) h.observe(v);
  auto s = h.snapshot();
  ASSERT_EQ(s.cumulative.size(), 3u);
  EXPECT_EQ(s.cumulative[0], 3u);  // 0, 1, -1
  EXPECT_EQ(s.cumulative[1], 5u);  // + 1.0000001, 2
  EXPECT_EQ(s.cumulative[2], 6u);
  EXPECT_EQ(s.count, 6u);
  EXPECT_DOUBLE_EQ(s.sum, 5.5000001);
  EXPECT_NE(r.render().find("h_bucket{le=\"+Inf\"} 6\nh_sum 5.5000001\nh_count 6\n"),
            std::string::npos)
      << r.render();
}

TEST(Metrics, ChildReferencesAreStableAndShared) {
  Registry r;
  auto& f = r.counter("c_total", "x", {"a"});
  Counter& one = f.labels({"x"});
  for (int i = 0; i < 100; ++i) f.labels({"v" + std::to_string(i)});
  EXPECT_EQ(&one, &f.labels({"x"}));
  // Values that concatenate alike are different series.
  auto& g = r.counter("d_total", "x", {"a", "b"});
  EXPECT_NE(&g.labels({"ab", "c"}), &g.labels({"a", "bc"}));
}

TEST(Metrics, RefusesProgrammingErrors) {
  Registry r;
  auto& f = r.counter("c_total", "x", {"a"});
  EXPECT_THROW(f.labels({"x", "y"}), std::logic_error);
  EXPECT_THROW(r.counter("c_total", "again"), std::logic_error);
  EXPECT_THROW(r.counter("bad-name", "x"), std::logic_error);
  EXPECT_THROW(r.counter("ok", "x", {"__reserved"}), std::logic_error);
  EXPECT_THROW(r.histogram("h", "x", {"le"}, {1}), std::logic_error);
  EXPECT_THROW(r.histogram("h2", "x", {}, {2, 1}), std::logic_error);
  EXPECT_THROW(r.histogram("h3", "x", {}, {}), std::logic_error);
}

TEST(Metrics, CardinalityIsCapped) {
  Registry r;
  auto& f = r.counter("c_total", "x", {"a"});
  for (std::size_t i = 0; i < kMaxSeriesPerFamily + 50; ++i) f.labels({std::to_string(i)}).inc();
  EXPECT_EQ(f.seriesCount(), kMaxSeriesPerFamily + 1);
  EXPECT_NE(r.render().find("c_total{a=\"_overflow\"} 50\n"), std::string::npos);
}

TEST(Metrics, ConcurrentIncrementsAreExact) {
  Registry r;
  auto& f = r.counter("c_total", "x", {"agent", "tier"});
  auto& g = r.gauge("g", "x").get();
  auto& h = r.histogram("h", "x", {"t"}, {0.5, 1});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half look the series up every time (racing on creation), half cache the handle.
      Counter& cached = f.labels({"shared", "0"});
      for (int i = 0; i < kPerThread; ++i) {
        if (t % 2)
          f.labels({"shared", "0"}).inc();
        else
          cached.inc();
        f.labels({"a" + std::to_string(i % 7), std::to_string(t)}).inc(2);
        g.inc();
        g.dec();
        g.inc();
        h.labels({std::to_string(i % 3)}).observe(i % 2 ? 0.25 : 0.75);
      }
    });
  }
  std::thread scraper([&] {
    for (int i = 0; i < 20; ++i) r.render();
  });
  for (auto& th : threads) th.join();
  scraper.join();
  EXPECT_EQ(f.labels({"shared", "0"}).value(), std::uint64_t{kThreads} * kPerThread);
  std::uint64_t spread = 0;
  for (int a = 0; a < 7; ++a)
    for (int t = 0; t < kThreads; ++t)
      spread += f.labels({"a" + std::to_string(a), std::to_string(t)}).value();
  EXPECT_EQ(spread, 2ULL * kThreads * kPerThread);
  EXPECT_EQ(g.value(), kThreads * kPerThread);
  std::uint64_t count = 0, low = 0;
  double sum = 0;
  for (int k = 0; k < 3; ++k) {
    auto s = h.labels({std::to_string(k)}).snapshot();
    count += s.count;
    low += s.cumulative[0];
    sum += s.sum;
  }
  EXPECT_EQ(count, std::uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(low, std::uint64_t{kThreads} * kPerThread / 2);
  EXPECT_DOUBLE_EQ(sum, kThreads * kPerThread * 0.5);  // 0.25 and 0.75 are exact in binary
}

TEST(Metrics, KscribeMetricsHaveStableNames) {
  Registry r;
  KscribeMetrics m(r);
  m.request("agent-a", 3, 403).inc();
  m.request("agent-a", 0, 0).inc();
  m.request_duration.labels({"0"}).observe(0.002);
  m.proxyRefusal(503).inc();
  m.identityRejection("agent-b", "uid").inc();
  m.attribution_hit.inc(2);
  m.upload_success.inc();
  m.spool_bytes.set(1234);
  m.connections_open.setValue([] { return 3.0; });
  exportBpfCounters(m, [] {
    std::vector<std::uint64_t> c(KSCRIBE_CNT_MAX, 0);
    c[KSCRIBE_CNT_NO_PENDING] = 5;
    c[KSCRIBE_CNT_JOINED] = 9;
    return c;
  });
  const std::string text = r.render();
  for (const char* line : {
           "kscribe_requests_total{agent=\"agent-a\",tier=\"3\",status=\"403\"} 1\n",
           "kscribe_requests_total{agent=\"agent-a\",tier=\"0\",status=\"error\"} 1\n",
           "kscribe_request_duration_seconds_bucket{tier=\"0\",le=\"0.0025\"} 1\n",
           "kscribe_request_duration_seconds_bucket{tier=\"0\",le=\"+Inf\"} 1\n",
           "kscribe_proxy_refusals_total{status=\"503\"} 1\n",
           "kscribe_identity_rejections_total{agent=\"agent-b\",reason=\"uid\"} 1\n",
           "kscribe_attribution_total{result=\"hit\"} 2\n",
           "kscribe_attribution_total{result=\"miss\"} 0\n",
           "kscribe_attribution_total{result=\"unavailable\"} 0\n",
           "kscribe_bpf_drops_total{reason=\"no_pending\"} 5\n",
           "kscribe_bpf_drops_total{reason=\"pending_full\"} 0\n",
           "kscribe_bpf_events_total{event=\"joined\"} 9\n",
           "kscribe_uploads_total{result=\"success\"} 1\n",
           "kscribe_uploads_total{result=\"failure\"} 0\n",
           "kscribe_upload_retries_total 0\n",
           "kscribe_spool_bytes 1234\n",
           "kscribe_bytes_recorded_total 0\n",
           "kscribe_redactions_total 0\n",
           "kscribe_truncations_total 0\n",
           "kscribe_sessions_open 0\n",
           "kscribe_sessions_closed_total 0\n",
           "kscribe_connections_open 3\n",
           "# TYPE kscribe_request_duration_seconds histogram\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
  EXPECT_EQ(text.find("kscribe_bpf_drops_total{reason=\"joined\"}"), std::string::npos);
  exportBpfCounters(m, {});
  EXPECT_EQ(r.render().find("kscribe_bpf_drops_total{"), std::string::npos);
  // The global instance exists and is the one registry() renders.
  get().truncations.inc(0);
  EXPECT_NE(registry().render().find("# TYPE kscribe_truncations_total counter"),
            std::string::npos);
}

}  // namespace
}  // namespace kscribe::metrics
