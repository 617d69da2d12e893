// The proxy end to end over real sockets: raw TLS client -> kscribe proxy -> real HTTPS upstream.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "agent/durable_file.h"
#include "proxy/log.h"
#include "proxy/proxy_util.h"
#include "proxy/server.h"

namespace kscribe::proxy {
namespace {
using test::Pki;
using test::Response;
using test::TlsClient;
using namespace std::chrono_literals;

constexpr const char* kToken = "fake-token-for-tests-only";

// Records what the tap sees, to check it gets exactly the forwarded bytes.
struct RecordingTap : Tap {
  struct Exchange : ExchangeTap {
    RecordingTap* owner;
    std::string request_body, response_body;
    unsigned status = 0;
    explicit Exchange(RecordingTap* o) : owner(o) {}
    void requestBody(std::span<const char> c) override { request_body.append(c.data(), c.size()); }
    void responseHead(const ResponseHead& h) override { status = h.status; }
    void responseBody(std::span<const char> c) override {
      if (owner->throw_on_body) throw std::runtime_error("tap failure");
      response_body.append(c.data(), c.size());
    }
    void upgraded() override {
      std::lock_guard l(owner->mu);
      owner->events.push_back("upgraded");
    }
    void end() override {
      std::lock_guard l(owner->mu);
      owner->events.push_back("end " + std::to_string(status) + " req=" + request_body +
                              " resbytes=" + std::to_string(response_body.size()));
    }
    void error(std::string_view what) override {
      std::lock_guard l(owner->mu);
      owner->events.push_back("error " + std::string(what));
    }
  };
  Begin begin(const ConnectionInfo& c, const RequestHead& r) override {
    std::lock_guard l(mu);
    agents.push_back(c.agent + "/" + c.auth_method);
    for (const auto& [k, v] : r.headers)
      if (k == "Authorization" || k == "authorization") saw_authorization = true;
    if (refuse && r.target.find("/refuse") == 0)
      return {nullptr, Refusal{503, "ServiceUnavailable", "recorder cannot record"}};
    if (busy_answers > 0) {
      --busy_answers;
      Begin busy;
      busy.retry_after = std::chrono::milliseconds(20);
      return busy;
    }
    return {std::make_unique<Exchange>(this), std::nullopt};
  }
  void refused(const ConnectionInfo&, const RequestHead&, unsigned status,
               std::string_view) override {
    std::lock_guard l(mu);
    refusals.push_back(status);
  }
  std::vector<std::string> snapshot() {
    std::lock_guard l(mu);
    return events;
  }
  std::mutex mu;
  std::vector<std::string> events, agents;
  std::vector<unsigned> refusals;
  bool saw_authorization = false;
  bool refuse = true;
  bool throw_on_body = false;
  int busy_answers = 0;  // begin() says "busy, ask again" this many times
};

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::getenv("KSCRIBE_TEST_DEBUG")) log::setLevel(log::Level::kDebug);
    startProxy();
  }
  void TearDown() override {
    if (server_) {
      server_->stop();
      server_->wait();
    }
  }
  virtual void adjust(ServerOptions&) {}
  void startProxy() {
    const auto& pki = Pki::get();
    ServerOptions o;
    o.cert_file = pki.server_crt;
    o.key_file = pki.server_key;
    o.ca_file = pki.ca_crt;
    o.agents.push_back({"bob", durable::sha256Hex(kToken)});
    o.upstream.host = "127.0.0.1";
    o.upstream.port = std::to_string(upstream_.port());
    o.upstream.ca_pem = test::readFile(pki.upstream_ca);
    o.upstream.token = "upstream-fake-token";
    o.upstream.response_timeout = 1500ms;
    o.upstream.connect_timeout = 1500ms;
    o.limits.max_header_size = 8 * 1024;
    o.limits.max_request_line = 2 * 1024;
    o.limits.header_timeout = 500ms;
    o.limits.idle_timeout = 3s;
    o.limits.shutdown_grace = 1s;
    o.threads = 2;
    o.tap = &tap_;
    adjust(o);
    server_ = std::make_unique<Server>(std::move(o));
    server_->start();
  }
  TlsClient::Options alice() { return {Pki::get().alice_crt, Pki::get().alice_key, {}, 5000ms}; }
  static std::string get(const std::string& target, const std::string& extra = "") {
    return "GET " + target + " HTTP/1.1\r\nHost: kscribe\r\n" + extra + "\r\n";
  }
  // GET /echo while the tap answers "busy, ask again in 20 ms" `busy_answers` times; `waited` is
  // how long the answer took.
  Response getWhileTapBusy(TlsClient& c, int busy_answers,
                           std::chrono::steady_clock::duration& waited) {
    {
      std::lock_guard l(tap_.mu);
      tap_.busy_answers = busy_answers;
    }
    const auto start = std::chrono::steady_clock::now();
    if (!c.send(get("/echo"))) return {};
    Response r = c.read();
    waited = std::chrono::steady_clock::now() - start;
    return r;
  }
  // Asks for a 1 GB body and reads its first megabyte.
  static void startLargeDownload(TlsClient& c) {
    ASSERT_TRUE(c.send(get("/big?size=1073741824")));
    std::size_t got = 0;
    while (got < 1'000'000) {
      auto s = c.readSome(65536);
      ASSERT_FALSE(s.empty());
      got += s.size();
    }
  }
  // Reads until `needle` shows up (or the connection ends); returns all that was read.
  static std::string readUntil(TlsClient& c, const std::string& needle) {
    std::string got;
    while (got.find(needle) == std::string::npos) {
      std::string s = c.readSome(4096);
      if (s.empty()) break;
      got += s;
    }
    return got;
  }
  // The tap's end() follows the last write to the client: wait for it rather than race it.
  std::vector<std::string> events(std::size_t n) {
    for (int i = 0; i < 200 && tap_.snapshot().size() < n; ++i) std::this_thread::sleep_for(10ms);
    return tap_.snapshot();
  }
  static std::string bearer() { return std::string("Authorization: Bearer ") + kToken + "\r\n"; }

  test::Upstream upstream_;
  RecordingTap tap_;
  std::unique_ptr<Server> server_;
};

// --- authentication --------------------------------------------------------------------------
TEST_F(ProxyTest, CertificateAuthenticatesAgent) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.send(get("/echo")));
  Response r = c.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(tap_.agents.at(0), "alice/certificate");
}

TEST_F(ProxyTest, TokenAuthenticatesAgent) {
  TlsClient c(server_->port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.send(get("/echo", bearer())));
  Response r = c.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(tap_.agents.at(0), "bob/token");
}

TEST_F(ProxyTest, NoCredentialIs401WithStatusBody) {
  TlsClient c(server_->port());
  ASSERT_TRUE(c.send(get("/echo")));
  Response r = c.read();
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.body.find("\"kind\":\"Status\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"reason\":\"Unauthorized\""), std::string::npos);
  EXPECT_NE(r.body.find("\"code\":401"), std::string::npos);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_TRUE(upstream_.seen().empty());
  ASSERT_EQ(tap_.refusals.size(), 1u);
  EXPECT_EQ(tap_.refusals[0], 401u);
}

TEST_F(ProxyTest, WrongTokenIs401) {
  TlsClient c(server_->port());
  ASSERT_TRUE(c.send(get("/echo", "Authorization: Bearer not-the-token\r\n")));
  EXPECT_EQ(c.read().status, 401);
}

TEST_F(ProxyTest, CertificateFromAnotherCaIsRejectedAtHandshake) {
  TlsClient c(server_->port(), {Pki::get().rogue_crt, Pki::get().rogue_key, {}, 2000ms});
  // TLS 1.3: the client learns of the rejection on its first read.
  if (c.ok()) {
    c.send(get("/echo"));
    EXPECT_EQ(c.read().status, 0);
  }
  EXPECT_TRUE(upstream_.seen().empty());
}

TEST_F(ProxyTest, CertificateOfOtherTrustDomainIs401) {
  TlsClient c(server_->port(), {Pki::get().other_td_crt, Pki::get().other_td_key, {}, 2000ms});
  ASSERT_TRUE(c.ok());
  c.send(get("/echo"));
  EXPECT_EQ(c.read().status, 401);
}

TEST_F(ProxyTest, AlpnOffersOnlyHttp11) {
  TlsClient c(server_->port(), {{}, {}, {"h2", "http/1.1"}, 2000ms});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.alpn(), "http/1.1");
  TlsClient h2only(server_->port(), {{}, {}, {"h2"}, 2000ms});
  ASSERT_TRUE(h2only.ok());
  EXPECT_EQ(h2only.alpn(), "");
}

// --- header rewriting ------------------------------------------------------------------------
TEST_F(ProxyTest, CredentialsAreNotForwardedAndUpstreamTokenIs) {
  TlsClient c(server_->port());
  ASSERT_TRUE(
      c.send(get("/echo", bearer() + "Cookie: session=fake\r\nProxy-Authorization: Basic x\r\n"
                                     "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
                                     "Keep-Alive: timeout=5\r\nTE: trailers\r\n"
                                     "X-Kept: yes\r\n")));
  ASSERT_EQ(c.read().status, 200);
  auto seen = upstream_.last();
  EXPECT_EQ(seen.get("Authorization"), "Bearer upstream-fake-token");
  EXPECT_FALSE(seen.has("Cookie"));
  EXPECT_FALSE(seen.has("Proxy-Authorization"));
  EXPECT_FALSE(seen.has("X-Hop"));
  EXPECT_FALSE(seen.has("Keep-Alive"));
  EXPECT_FALSE(seen.has("TE"));
  EXPECT_FALSE(seen.has("Impersonate-User"));
  EXPECT_EQ(seen.get("X-Kept"), "yes");
  EXPECT_FALSE(tap_.saw_authorization);
}

TEST_F(ProxyTest, ClientImpersonationIs403) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(get("/echo", "Impersonate-User: admin\r\n")));
  Response r = c.read();
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.body.find("\"reason\":\"Forbidden\""), std::string::npos);
  EXPECT_TRUE(upstream_.seen().empty());
  // Keep-alive survives a bodyless refusal.
  ASSERT_TRUE(c.send(get("/echo", "impersonate-group: system:masters\r\n")));
  EXPECT_EQ(c.read().status, 403);
}

class ImpersonatingProxyTest : public ProxyTest {
  void adjust(ServerOptions& o) override { o.upstream.impersonate = true; }
};
TEST_F(ImpersonatingProxyTest, SendsImpersonateUserForAgent) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(get("/echo")));
  ASSERT_EQ(c.read().status, 200);
  EXPECT_EQ(upstream_.last().get("Impersonate-User"), "kscribe:agent:alice");
}

// --- framing ---------------------------------------------------------------------------------
TEST_F(ProxyTest, ContentLengthBodyBothWaysAndKeepAlive) {
  TlsClient c(server_->port(), alice());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"));
    Response r = c.read();
    ASSERT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("\n\nhello world"), std::string::npos);
    EXPECT_EQ(std::stoul(r.header("content-length")), r.body.size());
  }
  EXPECT_EQ(upstream_.connections.load(), 1) << "upstream keep-alive pool reuses one connection";
  auto events = this->events(3);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_NE(events[0].find("end 200 req=hello world"), std::string::npos) << events[0];
}

TEST_F(ProxyTest, ChunkedRequestAndResponse) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(
      c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
  Response r = c.read();
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\n\nhello world"), std::string::npos);
  EXPECT_EQ(upstream_.last().body, "hello world");
  ASSERT_TRUE(c.send(get("/chunked?n=4")));
  r = c.read();
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("transfer-encoding"), "chunked");
  EXPECT_EQ(r.body, "chunk-0\nchunk-1\nchunk-2\nchunk-3\n");
}

TEST_F(ProxyTest, InterimResponsesReachHttp11ClientsBeforeTheFinalOne) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(get("/early-hints")));
  Response hints = c.read();
  EXPECT_EQ(hints.status, 103);
  EXPECT_EQ(hints.header("link"), "</openapi/v3>; rel=preload");
  Response r = c.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "final");
  // An HTTP/1.0 client cannot take an interim response (RFC 9110 15.2): it gets the final one.
  TlsClient old(server_->port(), alice());
  ASSERT_TRUE(old.send("GET /early-hints HTTP/1.0\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(old.read().status, 200);
}

TEST_F(ProxyTest, HeadAnd204And304HaveNoBody) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send("HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
  Response r = c.read(true);
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.header("content-length").empty());
  ASSERT_TRUE(c.send(get("/status?code=204")));
  EXPECT_EQ(c.read().status, 204);
  ASSERT_TRUE(c.send(get("/status?code=304")));
  r = c.read();
  EXPECT_EQ(r.status, 304);
  // Still in sync: the next response parses.
  ASSERT_TRUE(c.send(get("/echo")));
  EXPECT_EQ(c.read().status, 200);
}

TEST_F(ProxyTest, ExpectContinue) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(
      c.send("PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
  Response interim = c.read();
  EXPECT_EQ(interim.status, 100);
  ASSERT_TRUE(c.send("data"));
  Response r = c.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(upstream_.last().body, "data");
  EXPECT_FALSE(upstream_.last().has("Expect"));
}

TEST_F(ProxyTest, EofDelimitedResponseIsRechunked) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(get("/eof")));
  Response r = c.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "until-close-body");
}

TEST_F(ProxyTest, WatchEventsStreamBeforeTheResponseEnds) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(get("/watch")));
  // The first event must arrive while the upstream still holds the stream open.
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (got.find("ADDED") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::string s = c.readSome(4096);
    if (s.empty()) break;
    got += s;
  }
  EXPECT_NE(got.find("ADDED"), std::string::npos);
  EXPECT_EQ(got.find("MODIFIED"), std::string::npos);
  upstream_.releaseWatch();
  while (got.find("0\r\n\r\n") == std::string::npos) {
    std::string s = c.readSome(4096);
    if (s.empty()) break;
    got += s;
  }
  EXPECT_NE(got.find("MODIFIED"), std::string::npos);
}

TEST_F(ProxyTest, TapRefusalIsAnsweredWithoutForwarding) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(get("/refuse")));
  Response r = c.read();
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("recorder cannot record"), std::string::npos);
  EXPECT_TRUE(upstream_.seen().empty());
}

TEST_F(ProxyTest, BusyTapDelaysTheExchange) {
  TlsClient slow(server_->port(), alice());
  std::chrono::steady_clock::duration waited{};
  Response r = getWhileTapBusy(slow, 5, waited);  // 5 x 20 ms
  EXPECT_EQ(r.status, 200);
  EXPECT_GE(waited, std::chrono::milliseconds(100));
  EXPECT_EQ(upstream_.seen().size(), 1u);
  EXPECT_TRUE(tap_.refusals.empty());
  // Nothing left waiting: the next request goes straight through.
  ASSERT_TRUE(slow.send(get("/echo")));
  EXPECT_EQ(slow.read().status, 200);
}

class ShortRecordWaitProxyTest : public ProxyTest {
  void adjust(ServerOptions& o) override { o.limits.record_wait = 100ms; }
};
TEST_F(ShortRecordWaitProxyTest, TapBusyBeyondTheRecordWaitGets503AndIsAudited) {
  TlsClient c(server_->port(), alice());
  std::chrono::steady_clock::duration waited{};
  Response r = getWhileTapBusy(c, 1000, waited);  // busy for 20 s, far past limits.record_wait
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("did not catch up within 100ms"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"reason\":\"ServiceUnavailable\""), std::string::npos) << r.body;
  EXPECT_GE(waited, 100ms);
  EXPECT_LT(waited, 5s);
  EXPECT_TRUE(upstream_.seen().empty());
  std::lock_guard l(tap_.mu);
  ASSERT_EQ(tap_.refusals.size(), 1u);
  EXPECT_EQ(tap_.refusals[0], 503u);
}

TEST_F(ProxyTest, ThrowingTapDoesNotBreakTheRelay) {
  tap_.throw_on_body = true;
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(get("/chunked?n=3")));
  Response r = c.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "chunk-0\nchunk-1\nchunk-2\n");
}

// --- upgrades --------------------------------------------------------------------------------
TEST_F(ProxyTest, UpgradeRelaysRawBytesBothWays) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(
      "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test-proto\r\n\r\n"));
  Response r = c.read(true);
  ASSERT_EQ(r.status, 101);
  EXPECT_EQ(r.header("upgrade"), "test-proto");
  std::string got;
  while (got.find("hello-from-upstream\n") == std::string::npos) {
    auto s = c.readSome(100);
    if (s.empty()) break;
    got += s;
  }
  EXPECT_EQ(got, "hello-from-upstream\n");
  ASSERT_TRUE(c.send("ping"));
  got.clear();
  while (got.size() < 4) {
    auto s = c.readSome(100);
    if (s.empty()) break;
    got += s;
  }
  EXPECT_EQ(got, "PING");
  EXPECT_EQ(upstream_.last().get("Connection"), "Upgrade");
  auto events = tap_.snapshot();
  ASSERT_GE(events.size(), 1u);
  EXPECT_EQ(events[0], "upgraded");
}

// --- limits ----------------------------------------------------------------------------------
TEST_F(ProxyTest, HeaderBlockTooLargeIs431AndCloses) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(
      c.send("GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(9000, 'a') + "\r\n\r\n"));
  Response r = c.read();
  EXPECT_EQ(r.status, 431);
  EXPECT_NE(r.body.find("\"code\":431"), std::string::npos);
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_TRUE(c.closedByPeer());
}

TEST_F(ProxyTest, RequestLineTooLongIs414AndCloses) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send("GET /" + std::string(3000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n"));
  Response r = c.read();
  EXPECT_EQ(r.status, 414);
  EXPECT_NE(r.body.find("\"code\":414"), std::string::npos);
  EXPECT_TRUE(c.closedByPeer());
}

TEST_F(ProxyTest, RequestLineBeyondHeaderLimitIs414) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send("GET /" + std::string(10000, 'a')));
  EXPECT_EQ(c.read().status, 414);
  EXPECT_TRUE(c.closedByPeer());
}

TEST_F(ProxyTest, ContentLengthWithTransferEncodingIs400AndCloses) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(
      c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: "
             "chunked\r\n\r\n0\r\n\r\n"));
  Response r = c.read();
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\"reason\":\"BadRequest\""), std::string::npos);
  EXPECT_TRUE(c.closedByPeer());
  EXPECT_TRUE(upstream_.seen().empty());
}

TEST_F(ProxyTest, TransferEncodingThenContentLengthIs400) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(
      c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nContent-Length: "
             "5\r\n\r\nhello"));
  EXPECT_EQ(c.read().status, 400);
  EXPECT_TRUE(c.closedByPeer());
}

TEST_F(ProxyTest, ConflictingContentLengthsIs400AndCloses) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"));
  Response r = c.read();
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(c.closedByPeer());
  EXPECT_TRUE(upstream_.seen().empty());
}

TEST_F(ProxyTest, BadChunkSizeIs400AndCloses) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(
      c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
             "chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"));
  Response r = c.read();
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("chunk"), std::string::npos) << r.body;
  EXPECT_TRUE(c.closedByPeer());
}

TEST_F(ProxyTest, SlowlorisHeadersAre408AndClose) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send("GET /echo HTTP/1.1\r\nHost: x\r\n"));  // never finished
  const auto start = std::chrono::steady_clock::now();
  Response r = c.read();
  EXPECT_EQ(r.status, 408);
  EXPECT_NE(r.body.find("\"code\":408"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_TRUE(c.closedByPeer());
}

TEST_F(ProxyTest, SilentTlsClientIsDroppedAfterHeaderTimeout) {
  // A TCP connection that never starts TLS must not hold a slot.
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.ok());
  EXPECT_GE(server_->activeConnections(), 1u);
}

TEST_F(ProxyTest, UpstreamRefusedIs502) {
  server_->stop();
  server_->wait();
  server_.reset();
  // A port with nothing listening: bind, note the port, close.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  const auto& pki = Pki::get();
  ServerOptions o;
  o.cert_file = pki.server_crt;
  o.key_file = pki.server_key;
  o.ca_file = pki.ca_crt;
  o.upstream.host = "127.0.0.1";
  o.upstream.port = std::to_string(ntohs(a.sin_port));
  o.threads = 1;
  server_ = std::make_unique<Server>(std::move(o));
  server_->start();
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(get("/echo")));
  Response r = c.read();
  EXPECT_EQ(r.status, 502);
  EXPECT_NE(r.body.find("\"code\":502"), std::string::npos);
}

TEST_F(ProxyTest, UpstreamClosingWithoutResponseIs502) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(get("/close")));
  EXPECT_EQ(c.read().status, 502);
}

TEST_F(ProxyTest, UpstreamTimeoutIs504) {
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(get("/hang")));
  Response r = c.read();
  EXPECT_EQ(r.status, 504);
  EXPECT_NE(r.body.find("\"reason\":\"Timeout\""), std::string::npos);
  auto events = this->events(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].rfind("error", 0), 0u);
}

TEST_F(ProxyTest, UpstreamCertificateIsVerified) {
  server_->stop();
  server_->wait();
  server_.reset();
  const auto& pki = Pki::get();
  ServerOptions o;
  o.cert_file = pki.server_crt;
  o.key_file = pki.server_key;
  o.ca_file = pki.ca_crt;
  o.upstream.host = "127.0.0.1";
  o.upstream.port = std::to_string(upstream_.port());
  o.upstream.ca_pem = test::readFile(pki.ca_crt);  // not the upstream's CA
  o.threads = 1;
  server_ = std::make_unique<Server>(std::move(o));
  server_->start();
  TlsClient c(server_->port(), alice());
  ASSERT_TRUE(c.send(get("/echo")));
  EXPECT_EQ(c.read().status, 502);
  EXPECT_TRUE(upstream_.seen().empty());
}

class CappedProxyTest : public ProxyTest {
  void adjust(ServerOptions& o) override { o.limits.max_connections = 2; }
};
TEST_F(CappedProxyTest, ConnectionsOverTheCapGet503AndClose) {
  TlsClient a(server_->port(), alice()), b(server_->port(), alice());
  ASSERT_TRUE(a.send(get("/echo")));
  ASSERT_EQ(a.read().status, 200);
  ASSERT_TRUE(b.send(get("/echo")));
  ASSERT_EQ(b.read().status, 200);
  TlsClient c(server_->port(), alice());
  Response r = c.read();
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("\"reason\":\"ServiceUnavailable\""), std::string::npos);
  EXPECT_TRUE(c.closedByPeer());
}

// --- backpressure ----------------------------------------------------------------------------
TEST_F(ProxyTest, SlowReaderSlowsTheUpstream) {
  TlsClient c(server_->port(), alice());
  // Read 1 MB, then stop reading. The upstream must stall: only socket buffers and the proxy's
  // fixed buffer may hold what the client has not read.
  ASSERT_NO_FATAL_FAILURE(startLargeDownload(c));
  std::uint64_t before = 0, after = upstream_.big_bytes_sent.load();
  do {
    before = after;
    std::this_thread::sleep_for(300ms);
    after = upstream_.big_bytes_sent.load();
  } while (after != before);
  EXPECT_LT(after, 64u * 1024 * 1024) << "upstream sent " << after << " bytes to a stalled reader";
}

TEST_F(ProxyTest, ClientThatStopsReadingIsClosedAfterIdleTimeout) {
  const auto start = std::chrono::steady_clock::now();
  {
    TlsClient c(server_->port(), alice());
    ASSERT_NO_FATAL_FAILURE(startLargeDownload(c));
    // Stop reading, keep the socket open: the proxy's write stalls until limits.idle_timeout.
    for (int i = 0; i < 800 && server_->activeConnections() != 0; ++i)
      std::this_thread::sleep_for(10ms);
    EXPECT_EQ(server_->activeConnections(), 0u) << "a stalled reader kept its connection";
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, 3s);  // not before the idle timeout
  auto events = this->events(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_NE(events[0].find("stopped reading"), std::string::npos) << events[0];
}

// --- shutdown --------------------------------------------------------------------------------
TEST_F(ProxyTest, ShutdownLetsInFlightFinishAndClosesIdle) {
  TlsClient idle(server_->port(), alice());
  ASSERT_TRUE(idle.send(get("/echo")));
  ASSERT_EQ(idle.read().status, 200);
  TlsClient busy(server_->port(), alice());
  ASSERT_TRUE(busy.send(get("/watch")));
  ASSERT_NE(readUntil(busy, "ADDED").find("ADDED"), std::string::npos);
  server_->stop();
  EXPECT_TRUE(idle.closedByPeer());
  upstream_.releaseWatch();  // the in-flight watch completes within the grace period
  std::string rest;
  for (std::string s; !(s = busy.readSome(4096)).empty();) rest += s;
  EXPECT_NE(rest.find("MODIFIED"), std::string::npos);
  server_->wait();
  // No longer accepting.
  TlsClient late(server_->port() ? server_->port() : 1, alice());
  EXPECT_FALSE(late.ok());
}

TEST_F(ProxyTest, ShutdownGraceClosesLongWatches) {
  TlsClient busy(server_->port(), alice());
  ASSERT_TRUE(busy.send(get("/watch")));
  ASSERT_NE(readUntil(busy, "ADDED").find("ADDED"), std::string::npos);
  const auto start = std::chrono::steady_clock::now();
  server_->stop();
  server_->wait();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 900ms);
  EXPECT_LT(took, 5s);
  EXPECT_TRUE(busy.closedByPeer());
}

TEST(ProxyStartup, MissingCertificateNamesTheKey) {
  ServerOptions o;
  o.cert_file = "/nonexistent/server.crt";
  o.key_file = Pki::get().server_key;
  o.ca_file = Pki::get().ca_crt;
  o.upstream.host = "127.0.0.1";
  try {
    Server s(std::move(o));
    FAIL() << "expected StartupError";
  } catch (const StartupError& e) {
    EXPECT_EQ(e.key(), "tls.cert");
  }
}

}  // namespace
}  // namespace kscribe::proxy

namespace kscribe::proxy {
namespace {
TEST_F(ProxyTest, ClientLeavingAWatchReleasesTheConnection) {
  {
    TlsClient c(server_->port(), alice());
    ASSERT_TRUE(c.send(get("/watch")));
    ASSERT_NE(readUntil(c, "ADDED").find("ADDED"), std::string::npos);
    EXPECT_EQ(server_->activeConnections(), 1u);
  }  // the client goes away while the upstream holds the stream open
  for (int i = 0; i < 200 && server_->activeConnections() != 0; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server_->activeConnections(), 0u);
  auto events = this->events(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].rfind("error", 0), 0u) << events[0];
}
}  // namespace
}  // namespace kscribe::proxy
