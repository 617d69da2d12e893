#include "agent/metrics_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "agent/metrics.h"

namespace kscribe {
namespace {

using namespace std::chrono_literals;

// A plain blocking client over a real loopback socket.
class Client {
 public:
  explicit Client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& s) {
    ASSERT_EQ(::write(fd_, s.data(), s.size()), ssize_t(s.size()));
  }
  // Reads until the peer closes or `timeout` passes.
  std::string readAll(std::chrono::milliseconds timeout = 5s) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[4096];
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
  // Reads one response with a Content-Length body.
  std::string readResponse() {
    std::string out;
    for (;;) {
      auto end = out.find("\r\n\r\n");
      if (end != std::string::npos) {
        auto cl = out.find("Content-Length: ");
        std::size_t len = cl == std::string::npos ? 0 : std::stoul(out.substr(cl + 16));
        if (out.size() >= end + 4 + len) return out;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return out;
      char buf[4096];
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) return out;
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
};

std::string get(std::uint16_t port, const std::string& path, const std::string& method = "GET") {
  Client c(port);
  EXPECT_TRUE(c.connected());
  c.send(method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  return c.readAll();
}

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<MetricsServer>(options(), registry_, health_);
    server_->start();
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }
  virtual MetricsServerOptions options() { return {}; }
  metrics::Registry registry_;
  HealthChecks health_;
  std::unique_ptr<MetricsServer> server_;
  std::uint16_t port_ = 0;
};

TEST_F(MetricsServerTest, ServesMetricsOverARealSocket) {
  auto& c = registry_.counter("t_requests_total", "Requests.", {"agent"});
  c.labels({"a"}).inc(41);
  c.labels({"a"}).inc();
  auto res = get(port_, "/metrics");
  EXPECT_TRUE(res.starts_with("HTTP/1.1 200 OK\r\n")) << res;
  EXPECT_NE(res.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            std::string::npos);
  EXPECT_NE(res.find("\r\n\r\n# HELP t_requests_total Requests.\n# TYPE t_requests_total counter\n"
                     "t_requests_total{agent=\"a\"} 42\n"),
            std::string::npos)
      << res;
  // The query string is ignored.
  EXPECT_TRUE(get(port_, "/metrics?x=1").starts_with("HTTP/1.1 200 OK"));
}

TEST_F(MetricsServerTest, HealthzAndReadyzFollowTheChecks) {
  EXPECT_TRUE(get(port_, "/healthz").starts_with("HTTP/1.1 200 OK"));
  EXPECT_TRUE(get(port_, "/readyz").starts_with("HTTP/1.1 200 OK"));

  health_.setCondition("proxy", false, "listener not bound");
  bool writable = true;
  health_.addReadiness("recorder", [&] { return writable ? "" : "storage not writable"; });
  auto res = get(port_, "/readyz");
  EXPECT_TRUE(res.starts_with("HTTP/1.1 503 Service Unavailable")) << res;
  EXPECT_NE(res.find("[-]proxy failed: listener not bound\n[+]recorder ok\nreadyz check failed\n"),
            std::string::npos)
      << res;
  health_.setCondition("proxy", true);
  res = get(port_, "/readyz");
  EXPECT_TRUE(res.starts_with("HTTP/1.1 200 OK")) << res;
  EXPECT_NE(res.find("[+]proxy ok\n[+]recorder ok\nreadyz check passed\n"), std::string::npos);
  writable = false;
  EXPECT_TRUE(get(port_, "/readyz").starts_with("HTTP/1.1 503"));
  // Readiness does not touch liveness.
  EXPECT_TRUE(get(port_, "/healthz").starts_with("HTTP/1.1 200 OK"));
  health_.addLiveness("loop", [] { return std::string("stuck"); });
  res = get(port_, "/healthz");
  EXPECT_TRUE(res.starts_with("HTTP/1.1 503")) << res;
  EXPECT_NE(res.find("[-]loop failed: stuck\n"), std::string::npos);
}

TEST_F(MetricsServerTest, AnswersOtherPathsAndMethods) {
  EXPECT_TRUE(get(port_, "/").starts_with("HTTP/1.1 404 Not Found"));
  EXPECT_TRUE(get(port_, "/metricsx").starts_with("HTTP/1.1 404 Not Found"));
  auto res = get(port_, "/metrics", "POST");
  EXPECT_TRUE(res.starts_with("HTTP/1.1 405 Method Not Allowed")) << res;
  EXPECT_NE(res.find("Allow: GET, HEAD\r\n"), std::string::npos);
  res = get(port_, "/healthz", "HEAD");
  EXPECT_TRUE(res.starts_with("HTTP/1.1 200 OK")) << res;
  EXPECT_TRUE(res.ends_with("\r\n\r\n")) << res;  // no body
}

TEST_F(MetricsServerTest, KeepsAliveAcrossRequests) {
  Client c(port_);
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 3; ++i) {
    c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    auto res = c.readResponse();
    EXPECT_TRUE(res.starts_with("HTTP/1.1 200 OK")) << i << res;
    EXPECT_TRUE(res.ends_with("healthz check passed\n")) << res;
  }
}

TEST_F(MetricsServerTest, ClosesMalformedRequests) {
  Client c(port_);
  c.send("NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(c.readAll(), "");
  EXPECT_TRUE(c.closed());
  Client big(port_);
  big.send("GET /metrics HTTP/1.1\r\nX: " + std::string(20'000, 'a') + "\r\n\r\n");
  EXPECT_EQ(big.readAll().find("200 OK"), std::string::npos);
}

TEST_F(MetricsServerTest, StopClosesConnectionsAndIsIdempotent) {
  Client idle(port_);
  ASSERT_TRUE(idle.connected());
  for (int i = 0; i < 500 && server_->activeConnections() == 0; ++i)
    std::this_thread::sleep_for(2ms);
  server_->stop();
  server_->stop();
  idle.readAll(2s);
  EXPECT_TRUE(idle.closed());
  Client after(port_);
  EXPECT_FALSE(after.connected());
}

class CappedMetricsServerTest : public MetricsServerTest {
 protected:
  MetricsServerOptions options() override {
    MetricsServerOptions o;
    o.max_connections = 2;
    o.timeout = 300ms;
    return o;
  }
};

TEST_F(CappedMetricsServerTest, RefusesConnectionsBeyondTheCapAndTimesOutIdleOnes) {
  Client a(port_), b(port_);
  ASSERT_TRUE(a.connected() && b.connected());
  for (int i = 0; i < 500 && server_->activeConnections() < 2; ++i)
    std::this_thread::sleep_for(2ms);
  ASSERT_EQ(server_->activeConnections(), 2u);
  Client c(port_);
  c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(c.readAll(2s), "");  // closed unanswered
  EXPECT_TRUE(c.closed());
  // The idle ones time out (the timeout bounds a silent client), freeing the slots.
  auto t0 = std::chrono::steady_clock::now();
  a.readAll(3s);
  EXPECT_TRUE(a.closed());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 100ms);
  b.readAll(3s);
  for (int i = 0; i < 500 && server_->activeConnections() > 0; ++i)
    std::this_thread::sleep_for(2ms);
  EXPECT_TRUE(get(port_, "/healthz").starts_with("HTTP/1.1 200 OK"));
}

TEST(MetricsServer, BindFailureNamesTheAddress) {
  metrics::Registry r;
  HealthChecks h;
  MetricsServer first({}, r, h);
  MetricsServerOptions o;
  o.port = first.port();
  try {
    MetricsServer second(o, r, h);
    FAIL() << "bound twice";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen on 127.0.0.1:" + std::to_string(o.port)),
              std::string::npos)
        << e.what();
  }
  o.address = "not-an-ip";
  EXPECT_THROW(MetricsServer(o, r, h), std::runtime_error);
}

TEST(LoopWatchdog, FailsWhenTheLoopStopsRunning) {
  boost::asio::io_context io;
  LoopWatchdog dog(io, 5ms, 100ms);
  std::atomic<bool> run{true};
  std::thread loop([&] {
    while (run) io.run_for(10ms);
  });
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(dog.check(), "");  // beats kept it fresh past stale_after
  run = false;
  loop.join();
  std::this_thread::sleep_for(150ms);
  EXPECT_NE(dog.check().find("event loop unresponsive for"), std::string::npos) << dog.check();
}

}  // namespace
}  // namespace kscribe
