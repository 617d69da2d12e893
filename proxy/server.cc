// The proxy: listener (TLS, authentication, connection cap), per-connection relay (HTTP/1.1
// over Beast with buffer_body, upgrades), upstream pool, graceful shutdown.
//
// Layers, top to bottom: Server::Impl accepts and tracks connections and hands each to one
// Worker (a thread with its own io_context and upstream pool, like an nginx worker: a
// connection's handlers never cross threads, so there are no strands and no cross-thread wake-ups
// on the data path); Connection owns one client TLS stream and runs exchanges one at a time; each
// exchange parses the request head (limits, framing checks, credentials), asks the tap, borrows an
// upstream connection from its worker's pool and relays head and body through a fixed buffer in
// both directions. Nothing here buffers a body.
#include <utility>  // must precede Asio's awaitable.hpp on Boost 1.74 (std::exchange)

#include "proxy/server.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <csignal>
#include <fstream>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "proxy/http_rules.h"
#include "proxy/log.h"
#include "proxy/status.h"
#include "proxy/tls_stream.h"

namespace kscribe::proxy {
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
// Everything runs on a worker's io_context: its concrete executor type spares each operation
// the type-erased any_io_executor wrapper.
using Executor = net::io_context::executor_type;
template <class T>
using Awaitable = net::awaitable<T, Executor>;
constexpr net::use_awaitable_t<Executor> kAwait;
using Socket = net::basic_stream_socket<tcp, Executor>;
using Acceptor = net::basic_socket_acceptor<tcp, Executor>;
using Resolver = net::ip::basic_resolver<tcp, Executor>;
using Timer = net::basic_waitable_timer<Clock, net::wait_traits<Clock>, Executor>;

namespace {

// Body bytes move through one buffer of this size per direction: one TLS record's worth, so
// memory per connection stays flat whatever the body size and a watch event is relayed as soon
// as it arrives.
constexpr std::size_t kBodyChunk = 16 * 1024;
// First read of a request: enough for a typical kubectl request head in one go.
constexpr std::size_t kReadChunk = 4 * 1024;
// Response heads from the API server are trusted but still bounded.
constexpr std::uint32_t kMaxUpstreamHeader = 1024 * 1024;
// Connections over limits.max_connections get a 503; this many at once, the rest are closed
// without a handshake (a flood must not cost a handshake each).
constexpr std::size_t kMaxRefusingConnections = 64;
// Waiting for the peer's close_notify, or for a refusal to be written.
constexpr milliseconds kCloseTimeout{2'000};
// A tap call slower than this is disabled for the rest of its exchange: taps must not stall.
constexpr milliseconds kTapStallLimit{50};
// A request that waited limits.record_wait for a busy tap (the recorder's writer behind) gets
// a 503 saying so.
std::string tapBusyMessage(milliseconds limit) {
  const auto ms = limit.count();
  return "kscribe's recorder is behind and did not catch up within " +
         (ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms") +
         "; try again later";
}
// Pooled upstream connections idle longer than this are dropped (API servers close idle ones).
constexpr milliseconds kPoolIdleMax{60'000};

// Bodies are streamed, never held, so they are not size-limited. (Boost 1.74's
// body_limit(boost::none) compares `len > none` as true and refuses every body: use the max.)
constexpr std::uint64_t kNoBodyLimit = std::numeric_limits<std::uint64_t>::max();

constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr std::string_view k100Continue = "HTTP/1.1 100 Continue\r\n\r\n";

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

bool isIpLiteral(const std::string& host) {
  beast::error_code ec;
  net::ip::make_address(host, ec);
  return !ec;
}

std::array<unsigned char, 32> sha256(std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

std::optional<std::array<unsigned char, 32>> fromHex(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  std::array<unsigned char, 32> out{};
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < 32; ++i) {
    const int hi = nib(hex[2 * i]), lo = nib(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return out;
}

int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  // Only HTTP/1.1: kubectl offers h2 first and falls back.
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpnHttp11, sizeof kAlpnHttp11, in, inlen) ==
          OPENSSL_NPN_NEGOTIATED &&
      *outlen == 8) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// Agent name from the verified client certificate's URI SAN spiffe://<trust_domain>/agent/NAME.
std::string certificateAgent(SSL* ssl, const std::string& trust_domain, std::string& spiffe) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return {};
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return {};
  const std::string prefix = "spiffe://" + trust_domain + "/agent/";
  std::string agent;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && agent.empty(); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const auto* data = ASN1_STRING_get0_data(name->d.uniformResourceIdentifier);
    const int len = ASN1_STRING_length(name->d.uniformResourceIdentifier);
    std::string_view uri(reinterpret_cast<const char*>(data), static_cast<std::size_t>(len));
    if (uri.size() <= prefix.size() || uri.substr(0, prefix.size()) != prefix) continue;
    std::string_view rest = uri.substr(prefix.size());
    if (rest.find_first_of("/?#") != std::string_view::npos) continue;
    agent = rest;
    spiffe = uri;
  }
  GENERAL_NAMES_free(names);
  return agent;
}

// One timer per connection guarding whichever wait is in progress. arm() sets the deadline and
// the action (which cancels a socket); disarm() drops the action. The timer itself is moved only
// when a deadline comes earlier than its expiry; otherwise an expiry that finds a later deadline
// waits again. So a keep-alive connection, whose every exchange arms and disarms several times,
// costs a timer operation every few seconds rather than several per request.
class Watchdog {
 public:
  explicit Watchdog(const Executor& ex) : timer_(ex) {}
  void arm(milliseconds after, std::function<void()> on_expiry) {
    deadline_ = Clock::now() + after;
    action_ = std::move(on_expiry);
    if (!waiting_ || deadline_ < timer_.expiry()) wait();
  }
  void disarm() { action_ = nullptr; }

 private:
  void wait() {
    timer_.expires_at(deadline_);  // a pending wait ends with operation_aborted
    waiting_ = true;
    // An expiry already queued when the connection goes away still runs: `alive` tells it.
    timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](const beast::error_code& ec) {
      if (ec || alive.expired()) return;  // re-aimed (another wait is pending) or destroyed
      waiting_ = false;
      if (!action_) return;
      if (Clock::now() < deadline_) return wait();
      auto a = std::move(action_);
      action_ = nullptr;
      a();
    });
  }

  Timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  Clock::time_point deadline_{};
  bool waiting_ = false;
  std::function<void()> action_;
};

// The tap for one exchange: every call is guarded so that a throwing or slow tap is disabled
// for the rest of the exchange and the relay carries on.
class GuardedTap {
 public:
  void reset(std::unique_ptr<ExchangeTap> t) { tap_ = std::move(t); }
  template <class F>
  void call(const char* what, F&& f) {
    if (!tap_) return;
    const auto start = Clock::now();
    try {
      f(*tap_);
    } catch (const std::exception& e) {
      log::warn(std::string("tap threw in ") + what + ": " + e.what() + "; disabled for exchange");
      tap_.reset();
      return;
    } catch (...) {
      log::warn(std::string("tap threw in ") + what + "; disabled for exchange");
      tap_.reset();
      return;
    }
    if (Clock::now() - start > kTapStallLimit) {
      log::warn(std::string("tap stalled in ") + what + "; disabled for exchange");
      auto t = std::move(tap_);
      try {
        t->error("tap disabled: too slow");
      } catch (...) {
      }
    }
  }
  void requestBody(std::span<const char> c) {
    call("requestBody", [&](ExchangeTap& t) { t.requestBody(c); });
  }
  void requestEnd() {
    call("requestEnd", [&](ExchangeTap& t) { t.requestEnd(); });
  }
  void responseHead(const ResponseHead& h) {
    call("responseHead", [&](ExchangeTap& t) { t.responseHead(h); });
  }
  void responseBody(std::span<const char> c) {
    call("responseBody", [&](ExchangeTap& t) { t.responseBody(c); });
  }
  void upgraded() {
    call("upgraded", [&](ExchangeTap& t) { t.upgraded(); });
  }
  void end() {
    call("end", [&](ExchangeTap& t) { t.end(); });
    tap_.reset();
  }
  void error(std::string_view what) {
    call("error", [&](ExchangeTap& t) { t.error(what); });
    tap_.reset();
  }

 private:
  std::unique_ptr<ExchangeTap> tap_;
};

// OpenSSL's record buffers (about 17 KB each way) are kept between records while requests flow
// (TlsStream's default): releasing them after every record (SSL_MODE_RELEASE_BUFFERS) costs an
// allocation and a free per record. A long stream (watch, logs -f, a tunnel) that sits mostly
// idle releases them, which keeps thousands of open watches small.
void keepRecordBuffers(TlsStream& s, bool keep) {
  if (keep) {
    SSL_clear_mode(s.native_handle(), SSL_MODE_RELEASE_BUFFERS);
  } else {
    SSL_set_mode(s.native_handle(), SSL_MODE_RELEASE_BUFFERS);
  }
}

struct UpstreamConn {
  // The read buffer starts a whole TLS record large: Beast sizes each read by the buffer's free
  // capacity (at least 512 bytes), so a small buffer would relay a body 512 bytes at a time.
  UpstreamConn(net::io_context& ioc, ssl::context& ctx) : stream(ioc, ctx) {
    buffer.reserve(kBodyChunk);
  }
  TlsStream stream;
  beast::flat_buffer buffer;
  bool reused = false;
  Clock::time_point idle_since{};
};

// One I/O thread: its io_context runs every handler of the connections it was given, and its
// pool holds upstream connections only those use (pool members are touched on this thread only).
struct Worker {
  net::io_context ioc{1};
  std::vector<std::unique_ptr<UpstreamConn>> idle;  // declared after ioc: destroyed first
  net::executor_work_guard<net::io_context::executor_type> guard{ioc.get_executor()};
};

class Connection;

}  // namespace

// ---------------------------------------------------------------------------------------------
struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  explicit Impl(ServerOptions o)
      : opts(std::move(o)),
        workers(makeWorkers(threadCount())),
        acceptor(workers.front()->ioc),
        grace_timer(workers.front()->ioc) {}

  static std::vector<std::unique_ptr<Worker>> makeWorkers(unsigned n) {
    std::vector<std::unique_ptr<Worker>> w;
    for (unsigned i = 0; i < n; ++i) w.push_back(std::make_unique<Worker>());
    return w;
  }
  // The acceptor, the grace timer and shutdown run on the first worker.
  net::io_context& acceptContext() { return workers.front()->ioc; }

  unsigned threadCount() const {
    if (opts.threads) return opts.threads;
    const unsigned n = std::thread::hardware_concurrency();
    return n ? n : 1;
  }

  void setup();
  Awaitable<void> acceptLoop();
  std::string upstreamToken();
  std::unique_ptr<UpstreamConn> takeIdle(Worker& w);
  void releaseIdle(Worker& w, std::unique_ptr<UpstreamConn> c);
  void connectionClosed(std::uint64_t id);
  std::string authenticateToken(std::string_view token) const;

  ServerOptions opts;
  std::vector<std::unique_ptr<Worker>> workers;
  // Identity checks, which may wait on the API server; only when an identity check is configured.
  std::optional<net::thread_pool> blocking_pool;
  std::size_t next_worker = 0;  // round robin; accept loop only
  ssl::context server_ctx{ssl::context::tls_server};
  ssl::context upstream_ctx{ssl::context::tls_client};
  Acceptor acceptor;
  Timer grace_timer;
  std::string upstream_authority;
  std::vector<std::pair<std::string, std::array<unsigned char, 32>>> token_digests;
  std::atomic<bool> draining{false};
  std::atomic<std::size_t> active{0};
  std::atomic<std::size_t> refusing{0};
  std::vector<std::thread> threads;

  std::mutex mu;  // guards everything below
  std::uint64_t next_id = 1;
  std::unordered_map<std::uint64_t, std::weak_ptr<Connection>> connections;
  std::string token;
  Clock::time_point token_read{};
};

namespace {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Server::Impl> server, Worker& worker, Socket socket, std::uint64_t id,
             bool over_cap)
      : server_(std::move(server)),
        worker_(worker),
        client_(std::move(socket), server_->server_ctx),
        watchdog_(client_.get_executor()),
        client_buf_(server_->opts.limits.max_header_size + kReadChunk),
        over_cap_(over_cap),
        body_buf_(new char[kBodyChunk]) {
    client_buf_.reserve(std::min(kBodyChunk, client_buf_.max_size()));  // see UpstreamConn
    info_.id = id;
    info_.fd = client_.next_layer().native_handle();
    info_.accepted_at = std::chrono::system_clock::now();
    beast::error_code ec;
    auto ep = client_.next_layer().remote_endpoint(ec);
    if (!ec) {
      info_.peer_address = ep.address().to_string();
      info_.peer_port = ep.port();
    }
  }
  ~Connection() {
    if (over_cap_) --server_->refusing;
    server_->connectionClosed(info_.id);
  }

  Executor executor() { return client_.get_executor(); }
  /// `self` keeps the connection alive for the coroutine's lifetime (the frame holds it).
  Awaitable<void> run(std::shared_ptr<Connection> self);

  // Shutdown: called on the connection's worker. An idle connection closes now; a busy one after
  // its exchange.
  void drain() {
    if (idle_) cancelClient();
  }
  // Grace period over: close both sides whatever they are doing.
  void abort() {
    aborted_ = true;
    beast::error_code ec;
    client_.next_layer().close(ec);
    if (current_upstream_ != nullptr) current_upstream_->stream.next_layer().close(ec);
  }

 private:
  const Limits& limits() const { return server_->opts.limits; }
  void cancelClient() {
    beast::error_code ec;
    client_.next_layer().cancel(ec);
  }
  void armClient(milliseconds after) {
    timed_out_ = false;
    watchdog_.arm(after, [this] {
      timed_out_ = true;
      cancelClient();
    });
  }
  void armUpstream(milliseconds after, UpstreamConn& up) {
    upstream_timed_out_ = false;
    watchdog_.arm(after, [this, &up] {
      upstream_timed_out_ = true;
      beast::error_code ec;
      up.stream.next_layer().cancel(ec);
    });
  }

  Awaitable<bool> exchange();
  Awaitable<std::unique_ptr<UpstreamConn>> connectUpstream(Verdict& failure);
  Awaitable<bool> refuse(const Verdict& v, const RequestHead* head, std::string_view reason = {},
                         bool notify_tap = true);
  Awaitable<bool> sendStatus(unsigned status, std::string_view message, bool close,
                             std::string_view reason = {});
  Awaitable<void> closeClient();
  Awaitable<void> tunnel(UpstreamConn& up);
  Awaitable<void> watchClient(UpstreamConn& up);
  Awaitable<void> pump(TlsStream& from, TlsStream& to, UpstreamConn& up);

  std::shared_ptr<Server::Impl> server_;
  Worker& worker_;
  TlsStream client_;
  Watchdog watchdog_;
  beast::flat_buffer client_buf_;
  ConnectionInfo info_;
  std::string cert_agent_, cert_spiffe_;
  std::string bearer_, bearer_agent_;        // the last bearer token accepted, and its agent
  std::string checked_agent_;                // the agent the identity check last decided
  std::optional<Refusal> identity_refusal_;  // its refusal, if any
  bool over_cap_ = false;
  bool idle_ = true;
  bool aborted_ = false;
  bool timed_out_ = false;
  bool upstream_timed_out_ = false;
  bool stop_watching_ = false;
  bool client_gone_ = false;
  UpstreamConn* current_upstream_ = nullptr;
  std::unique_ptr<char[]> body_buf_;
};

const std::shared_ptr<const Attribution>& unavailableAttribution() {
  static const std::shared_ptr<const Attribution> a = std::make_shared<Attribution>();
  return a;
}

Awaitable<void> Connection::run([[maybe_unused]] std::shared_ptr<Connection> self) {
  beast::error_code ec;
  auto re = net::redirect_error(kAwait, ec);

  info_.attribution = unavailableAttribution();
  if (server_->opts.attribution != nullptr) {
    try {
      if (auto a = server_->opts.attribution->lookup(info_.fd)) info_.attribution = std::move(a);
    } catch (const std::exception& e) {
      log::warn(std::string("attribution lookup failed: ") + e.what());
    }
  }

  armClient(limits().header_timeout);
  co_await client_.async_handshake(ssl::stream_base::server, re);
  watchdog_.disarm();
  if (ec) {
    log::debug("connection " + std::to_string(info_.id) +
               ": TLS handshake failed: " + ec.message());
    co_return;
  }
  if (over_cap_) {
    co_await sendStatus(503, "too many connections to kscribe", true);
    co_await closeClient();
    co_return;
  }
  cert_agent_ = certificateAgent(client_.native_handle(), server_->opts.trust_domain, cert_spiffe_);

  for (;;) {
    if (server_->draining || aborted_) break;
    bool keep = false;
    try {
      keep = co_await exchange();
    } catch (const std::exception& e) {
      // Only allocation failures and the like get here: the data path uses error codes.
      log::error("connection " + std::to_string(info_.id) + ": " + e.what());
      keep = false;
    }
    if (!keep) break;
  }
  co_await closeClient();
}

Awaitable<void> Connection::closeClient() {
  if (aborted_) co_return;
  beast::error_code ec;
  watchdog_.arm(kCloseTimeout, [this] { cancelClient(); });
  co_await client_.async_shutdown(net::redirect_error(kAwait, ec));
  watchdog_.disarm();
  client_.next_layer().close(ec);
}

Awaitable<bool> Connection::sendStatus(unsigned status, std::string_view message, bool close,
                                       std::string_view reason) {
  beast::error_code ec;
  const std::string response = statusResponse(status, message, close, reason);
  watchdog_.arm(kCloseTimeout, [this] { cancelClient(); });
  co_await net::async_write(client_, net::buffer(response), net::redirect_error(kAwait, ec));
  watchdog_.disarm();
  co_return !close && !ec;
}

Awaitable<bool> Connection::refuse(const Verdict& v, const RequestHead* head,
                                   std::string_view reason, bool notify_tap) {
  if (notify_tap && server_->opts.tap != nullptr) {
    try {
      static const RequestHead kEmpty;
      server_->opts.tap->refused(info_, head ? *head : kEmpty, v.status, v.message);
    } catch (const std::exception& e) {
      log::warn(std::string("tap threw in refused: ") + e.what());
    } catch (...) {
      log::warn("tap threw in refused");
    }
  }
  log::debug("connection " + std::to_string(info_.id) + ": " + std::to_string(v.status) + " " +
             std::string(v.message));
  co_return co_await sendStatus(v.status, v.message, v.close, reason);
}

Awaitable<std::unique_ptr<UpstreamConn>> Connection::connectUpstream(Verdict& failure) {
  if (auto c = server_->takeIdle(worker_)) co_return c;
  beast::error_code ec;
  auto re = net::redirect_error(kAwait, ec);
  const auto& up = server_->opts.upstream;
  auto c = std::make_unique<UpstreamConn>(worker_.ioc, server_->upstream_ctx);
  SSL* ssl = c->stream.native_handle();
  const std::string& name = up.tls_server_name.empty() ? up.host : up.tls_server_name;
  if (isIpLiteral(name)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, name.c_str());
    SSL_set1_host(ssl, name.c_str());
  }
  Resolver resolver(co_await net::this_coro::executor);
  upstream_timed_out_ = false;
  UpstreamConn* raw = c.get();
  watchdog_.arm(up.connect_timeout, [this, &resolver, raw] {
    upstream_timed_out_ = true;
    resolver.cancel();
    beast::error_code e;
    raw->stream.next_layer().close(e);
  });
  current_upstream_ = raw;
  auto results = co_await resolver.async_resolve(up.host, up.port, re);
  if (!ec) co_await net::async_connect(c->stream.next_layer(), results, re);
  if (!ec) {
    c->stream.next_layer().set_option(tcp::no_delay(true), ec);
    co_await c->stream.async_handshake(ssl::stream_base::client, re);
  }
  watchdog_.disarm();
  current_upstream_ = nullptr;
  if (ec) {
    if (upstream_timed_out_) {
      failure = {504, "timed out connecting to the upstream API server", false};
    } else {
      failure = {502, "cannot connect to the upstream API server", false};
    }
    log::warn("upstream " + up.host + ":" + up.port + ": " +
              (upstream_timed_out_ ? std::string("connect timed out") : ec.message()));
    co_return nullptr;
  }
  co_return c;
}

Awaitable<bool> Connection::exchange() {
  beast::error_code ec;
  auto re = net::redirect_error(kAwait, ec);

  // Keep-alive wait for the first byte (idle_timeout), then the whole head (header_timeout).
  if (client_buf_.size() == 0) {
    idle_ = true;
    if (server_->draining) co_return false;
    watchdog_.arm(limits().idle_timeout, [this] { cancelClient(); });
    const std::size_t n = co_await client_.async_read_some(client_buf_.prepare(kReadChunk), re);
    watchdog_.disarm();
    idle_ = false;
    if (ec) co_return false;
    client_buf_.commit(n);
  }
  idle_ = false;

  http::request_parser<http::buffer_body> req;
  req.header_limit(limits().max_header_size);
  req.body_limit(kNoBodyLimit);
  armClient(limits().header_timeout);
  co_await http::async_read_header(client_, client_buf_, req, re);
  watchdog_.disarm();
  if (ec) {
    if (timed_out_) {
      co_await refuse({408, "request headers not received within limits.header_timeout"}, nullptr);
      co_return false;
    }
    log::debug("request head: " + ec.message() + " (" + std::to_string(client_buf_.size()) +
               " bytes buffered)");
    if (auto v = classifyHeadError(ec, !req.get().method_string().empty()))
      co_await refuse(v, nullptr);
    co_return false;
  }

  auto& msg = req.get();
  RequestHead head{std::string(msg.method_string()), std::string(msg.target()), tapHeaders(msg),
                   req.upgrade()};
  const bool bodyless = req.is_done();
  if (auto v = checkRequestHead(msg, msg.method_string(), msg.target(), limits())) {
    co_await refuse(v, &head);
    co_return false;
  }

  // Credentials: a verified client certificate, else a bearer token.
  info_.agent.clear();
  info_.spiffe_id.clear();
  info_.auth_method.clear();
  if (!cert_agent_.empty()) {
    info_.agent = cert_agent_;
    info_.spiffe_id = cert_spiffe_;
    info_.auth_method = "certificate";
  } else {
    const std::string_view auth = msg[http::field::authorization];
    if (auth.size() > 7 && beast::iequals(auth.substr(0, 7), "bearer ")) {
      const std::string_view presented = auth.substr(7);
      // A client sends the same token on every request of a connection: checked once.
      if (presented.size() == bearer_.size() && !bearer_.empty() &&
          CRYPTO_memcmp(presented.data(), bearer_.data(), bearer_.size()) == 0) {
        info_.agent = bearer_agent_;
      } else {
        info_.agent = server_->authenticateToken(presented);
        bearer_.clear();
        if (!info_.agent.empty()) {
          bearer_ = presented;
          bearer_agent_ = info_.agent;
        }
      }
      if (!info_.agent.empty()) {
        info_.spiffe_id = "spiffe://" + server_->opts.trust_domain + "/agent/" + info_.agent;
        info_.auth_method = "token";
      }
    }
  }
  if (info_.agent.empty()) {
    co_return co_await refuse(
        {401, "Unauthorized: kscribe needs an agent client certificate or bearer token", !bodyless},
        &head);
  }
  if (hasImpersonation(msg)) {
    co_return co_await refuse(
        {403, "kscribe: Impersonate-* headers are not allowed through the proxy", !bodyless},
        &head);
  }

  if (server_->opts.identity != nullptr) {
    if (checked_agent_ != info_.agent) {
      try {
        // Off the worker: a pod not yet known is looked up from the API server, which can
        // take a while, and the worker serves other connections meanwhile.
        auto r = co_await net::co_spawn(
            server_->blocking_pool->get_executor(),
            [this]() -> net::awaitable<IdentityCheck::Result, net::thread_pool::executor_type> {
              co_return server_->opts.identity->check(info_);
            },
            kAwait);
        info_.identity = std::move(r.identity);
        identity_refusal_ = std::move(r.refusal);
      } catch (const std::exception& e) {
        log::warn(std::string("identity check failed: ") + e.what());
        identity_refusal_ = Refusal{403, "Forbidden", "kscribe: the identity check failed"};
      }
      checked_agent_ = info_.agent;
    }
    if (identity_refusal_) {
      const Refusal r = *identity_refusal_;
      co_return co_await refuse({r.status, r.message, !bodyless}, &head, r.reason);
    }
  }

  GuardedTap tap;
  if (server_->opts.tap != nullptr) {
    try {
      auto begin = server_->opts.tap->begin(info_, head);
      // A busy tap (its writer behind) slows this request down, up to limits.record_wait.
      for (milliseconds waited{0}; begin.retry_after.count() > 0;) {
        if (waited >= limits().record_wait) {
          const std::string message = tapBusyMessage(limits().record_wait);
          server_->opts.tap->refused(info_, head, 503, message);
          co_return co_await sendStatus(503, message, !bodyless, "ServiceUnavailable");
        }
        Timer pause(co_await net::this_coro::executor, begin.retry_after);
        co_await pause.async_wait(re);
        waited += begin.retry_after;
        begin = server_->opts.tap->begin(info_, head);
      }
      if (begin.refusal) {
        const auto& r = *begin.refusal;
        co_return co_await sendStatus(r.status, r.message, !bodyless, r.reason);
      }
      tap.reset(std::move(begin.tap));
    } catch (const std::exception& e) {
      log::warn(std::string("tap threw in begin: ") + e.what() + "; exchange not tapped");
    } catch (...) {
      log::warn("tap threw in begin; exchange not tapped");
    }
  }

  const bool client_keep_alive = msg.keep_alive();
  const bool upgrade = req.upgrade();
  const unsigned client_version = msg.version();
  const bool expect_continue = beast::iequals(msg[http::field::expect], "100-continue");
  const bool is_head = msg.method() == http::verb::head;

  // Rewrite for the API server: hop-by-hop and credential fields go, ours come in.
  stripHopByHop(msg, upgrade);
  msg.erase(http::field::authorization);
  msg.erase(http::field::cookie);
  msg.erase(http::field::expect);  // we answer 100-continue ourselves (RFC 9110 10.1.1)
  msg.version(11);
  msg.set(http::field::host, server_->upstream_authority);
  if (const std::string token = server_->upstreamToken(); !token.empty())
    msg.set(http::field::authorization, "Bearer " + token);
  if (server_->opts.upstream.impersonate)
    msg.set("Impersonate-User", std::string(kImpersonateUserPrefix) + info_.agent);
  if (upgrade) msg.set(http::field::connection, "Upgrade");

  std::unique_ptr<UpstreamConn> up;
  std::optional<http::response_parser<http::buffer_body>> res;
  char* const buf = body_buf_.get();
  for (int attempt = 0;; ++attempt) {
    Verdict failure;
    up = co_await connectUpstream(failure);
    if (!up) {
      tap.error(failure.message);
      failure.close = !req.is_done();
      co_return co_await refuse(failure, &head, {}, false);
    }
    current_upstream_ = up.get();
    // A pooled connection the server has meanwhile closed fails at once; a request without a
    // body can safely go again on a fresh one.
    const bool retryable = up->reused && attempt == 0 && bodyless;
    armUpstream(server_->opts.upstream.response_timeout, *up);
    http::request_serializer<http::buffer_body> sr{msg};
    co_await http::async_write_header(up->stream, sr, re);
    if (!ec && !req.is_done()) {
      // Request body: client -> fixed buffer -> upstream, chunk by chunk.
      watchdog_.disarm();
      if (expect_continue) {
        co_await net::async_write(client_, net::buffer(k100Continue), re);
        if (ec) {
          tap.error("client closed during request body");
          co_return false;
        }
      }
      bool client_failed = false;
      Verdict body_verdict;
      while (!req.is_done()) {
        req.get().body().data = buf;
        req.get().body().size = kBodyChunk;
        armClient(limits().idle_timeout);
        co_await http::async_read_some(client_, client_buf_, req, re);
        watchdog_.disarm();
        if (ec == http::error::need_buffer) ec = {};
        if (ec) {
          client_failed = true;
          body_verdict = classifyBodyError(ec);
          if (!body_verdict && timed_out_) body_verdict = {408, "request body stalled"};
          break;
        }
        const std::size_t n = kBodyChunk - req.get().body().size;
        req.get().body().data = n ? buf : nullptr;
        req.get().body().size = n;
        req.get().body().more = !req.is_done();
        if (n == 0 && req.get().body().more) continue;
        co_await http::async_write(up->stream, sr, re);
        if (ec == http::error::need_buffer) ec = {};
        if (ec) break;
        if (n) tap.requestBody({buf, n});
      }
      if (client_failed) {
        current_upstream_ = nullptr;
        tap.error("request body: " + ec.message());
        if (body_verdict) co_await refuse(body_verdict, &head, {}, false);
        co_return false;
      }
      if (!ec) armUpstream(server_->opts.upstream.response_timeout, *up);
    }
    if (!ec) tap.requestEnd();
    if (!ec) {
      res.emplace();
      res->header_limit(kMaxUpstreamHeader);
      res->body_limit(kNoBodyLimit);
      if (is_head) res->skip(true);
      co_await http::async_read_header(up->stream, up->buffer, *res, re);
      // Interim responses other than 101 go on to HTTP/1.1 clients as they come (RFC 9110
      // 15.2), except 100, which kscribe answered itself; the final response follows.
      while (!ec && res->get().result_int() / 100 == 1 && res->get().result_int() != 101) {
        if (client_version >= 11 && res->get().result_int() != 100) {
          auto& interim = res->get();
          stripHopByHop(interim, false);
          interim.version(11);
          http::response_serializer<http::buffer_body> is{interim};
          beast::error_code wec;
          co_await http::async_write_header(client_, is, net::redirect_error(kAwait, wec));
          if (wec) {
            current_upstream_ = nullptr;
            tap.error("client closed: " + wec.message());
            co_return false;
          }
        }
        res.emplace();
        res->header_limit(kMaxUpstreamHeader);
        res->body_limit(kNoBodyLimit);
        if (is_head) res->skip(true);
        co_await http::async_read_header(up->stream, up->buffer, *res, re);
      }
    }
    watchdog_.disarm();
    if (!ec) break;
    current_upstream_ = nullptr;
    if (retryable && !upstream_timed_out_) {
      log::debug("pooled upstream connection failed (" + ec.message() + "); retrying");
      continue;
    }
    const Verdict v =
        upstream_timed_out_
            ? Verdict{504, "the upstream API server did not respond in time", !req.is_done()}
            : Verdict{502, "the upstream API server closed or reset the connection",
                      !req.is_done()};
    log::warn("upstream: " + (upstream_timed_out_ ? std::string("timeout") : ec.message()));
    tap.error(v.message);
    co_return co_await refuse(v, &head, {}, false);
  }

  auto& rmsg = res->get();
  const unsigned status = rmsg.result_int();
  const bool upstream_keep_alive = rmsg.keep_alive();
  tap.responseHead(ResponseHead{status, tapHeaders(rmsg)});

  if (upgrade && status == 101) {
    stripHopByHop(rmsg, true);
    rmsg.set(http::field::connection, "Upgrade");
    http::response_serializer<http::buffer_body> rs{rmsg};
    co_await http::async_write_header(client_, rs, re);
    if (ec) {
      tap.error("client closed before the upgrade");
      co_return false;
    }
    tap.upgraded();
    keepRecordBuffers(client_, false);
    keepRecordBuffers(up->stream, false);
    co_await tunnel(*up);
    current_upstream_ = nullptr;
    tap.end();
    co_return false;
  }

  stripHopByHop(rmsg, false);
  bool keep = client_keep_alive && req.is_done() && !server_->draining;
  const bool delimited_by_eof = !res->is_done() && !res->chunked() && !res->content_length();
  if (client_version < 11) {
    rmsg.version(10);
    if (rmsg.chunked()) {
      rmsg.chunked(false);  // HTTP/1.0 has no chunked coding: delimit by close
      keep = false;
    }
    if (delimited_by_eof) keep = false;
  } else {
    rmsg.version(11);
    if (delimited_by_eof) rmsg.chunked(true);
  }
  rmsg.keep_alive(keep);

  // Response: upstream -> fixed buffer -> client. Each write completes before the next read:
  // a slow client slows the upstream through TCP flow control. When body bytes came in with the
  // head (a typical small response), head and first chunk go out in one write and one TLS
  // record; a stream whose body has not started yet (a quiet watch) gets its head at once.
  http::response_serializer<http::buffer_body> rs{rmsg};
  if (!res->is_done() && up->buffer.size() == 0) {
    co_await http::async_write_header(client_, rs, re);
    if (ec) {
      current_upstream_ = nullptr;
      tap.error("client closed: " + ec.message());
      co_return false;
    }
  }
  // A streamed response (watch, logs -f) can stay open for hours with nothing to write: watch
  // the client meanwhile, so one that went away releases its upstream stream at once.
  const bool watch_client = !res->is_done() && (res->chunked() || delimited_by_eof);
  // Allocated for streams only: a plain response spends nothing on the watcher.
  std::shared_ptr<Timer> watcher_done;
  std::shared_ptr<bool> watcher_finished;
  if (watch_client) {
    auto ex = co_await net::this_coro::executor;
    watcher_done = std::make_shared<Timer>(ex, Clock::time_point::max());
    watcher_finished = std::make_shared<bool>(false);
    stop_watching_ = false;
    keepRecordBuffers(client_, false);
    keepRecordBuffers(up->stream, false);
    net::co_spawn(ex, watchClient(*up), [watcher_done, watcher_finished](std::exception_ptr) {
      *watcher_finished = true;
      watcher_done->cancel();
    });
  }
  std::string failure;
  while (!res->is_done()) {
    rmsg.body().data = buf;
    rmsg.body().size = kBodyChunk;
    // The watcher cancels a read in progress; one that notices between reads stops the next.
    if (client_gone_) {
      failure = "client closed";
      break;
    }
    co_await http::async_read_some(up->stream, up->buffer, *res, re);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      failure = client_gone_ ? "client closed" : "upstream response body: " + ec.message();
      break;  // the client sees the body cut short and the connection close
    }
    const std::size_t n = kBodyChunk - rmsg.body().size;
    rmsg.body().data = n ? buf : nullptr;
    rmsg.body().size = n;
    rmsg.body().more = !res->is_done();
    if (n == 0 && rmsg.body().more) continue;
    // A client that stops reading holds the upstream stream through backpressure: it gets
    // limits.idle_timeout per write, then the exchange ends.
    armClient(limits().idle_timeout);
    co_await http::async_write(client_, rs, re);
    watchdog_.disarm();
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      failure = timed_out_ ? "client stopped reading (limits.idle_timeout)"
                           : "client closed: " + ec.message();
      break;
    }
    if (n) tap.responseBody({buf, n});
  }
  if (failure.empty() && !rs.is_done()) {  // a response without a body: its head alone
    rmsg.body().data = nullptr;
    rmsg.body().size = 0;
    rmsg.body().more = false;
    co_await http::async_write(client_, rs, re);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) failure = "client closed: " + ec.message();
  }
  if (watcher_finished && !*watcher_finished) {
    stop_watching_ = true;
    beast::error_code ignored;
    client_.next_layer().cancel(ignored);
    co_await watcher_done->async_wait(re);
  }
  if (watch_client) {
    keepRecordBuffers(client_, true);
    keepRecordBuffers(up->stream, true);
  }
  current_upstream_ = nullptr;
  if (!failure.empty()) {
    tap.error(failure);
    co_return false;
  }
  tap.end();
  if (upstream_keep_alive && !delimited_by_eof && up->buffer.size() == 0)
    server_->releaseIdle(worker_, std::move(up));
  co_return keep && !client_gone_;
}

Awaitable<void> Connection::watchClient(UpstreamConn& up) {
  beast::error_code ec;
  const std::size_t n = co_await client_.async_read_some(client_buf_.prepare(kReadChunk),
                                                         net::redirect_error(kAwait, ec));
  if (!ec) {
    client_buf_.commit(n);  // a pipelined request: kept for the next exchange
    co_return;
  }
  if (stop_watching_) co_return;
  client_gone_ = true;
  beast::error_code ignored;
  up.stream.next_layer().cancel(ignored);
}

Awaitable<void> Connection::pump(TlsStream& from, TlsStream& to, UpstreamConn& up) {
  beast::error_code ec;
  auto re = net::redirect_error(kAwait, ec);
  std::unique_ptr<char[]> buf(new char[kBodyChunk]);
  for (;;) {
    const std::size_t n = co_await from.async_read_some(net::buffer(buf.get(), kBodyChunk), re);
    if (ec) break;
    co_await net::async_write(to, net::buffer(buf.get(), n), re);
    if (ec) break;
  }
  // Either side closing ends the tunnel: shut both sockets so the other direction ends too.
  beast::error_code ignored;
  client_.next_layer().shutdown(Socket::shutdown_both, ignored);
  up.stream.next_layer().shutdown(Socket::shutdown_both, ignored);
  client_.next_layer().cancel(ignored);
  up.stream.next_layer().cancel(ignored);
}

Awaitable<void> Connection::tunnel(UpstreamConn& up) {
  beast::error_code ec;
  auto re = net::redirect_error(kAwait, ec);
  // Bytes already read past the heads belong to the tunnel.
  if (client_buf_.size()) {
    co_await net::async_write(up.stream, client_buf_.data(), re);
    client_buf_.consume(client_buf_.size());
  }
  if (!ec && up.buffer.size()) {
    co_await net::async_write(client_, up.buffer.data(), re);
    up.buffer.consume(up.buffer.size());
  }
  if (ec) co_return;
  auto ex = co_await net::this_coro::executor;
  auto done = std::make_shared<Timer>(ex, Clock::time_point::max());
  auto finished = std::make_shared<bool>(false);
  net::co_spawn(ex, pump(client_, up.stream, up), [done, finished](std::exception_ptr) {
    *finished = true;
    done->cancel();
  });
  co_await pump(up.stream, client_, up);
  if (!*finished) co_await done->async_wait(re);
  aborted_ = true;  // no TLS close_notify exchange after a tunnel: the sockets are shut
  beast::error_code ignored;
  client_.next_layer().close(ignored);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
void Server::Impl::setup() {
  // OpenSSL writes to the sockets with write(2): a peer that reset its connection must give the
  // writer EPIPE, not end the process.
  ::signal(SIGPIPE, SIG_IGN);
  if (opts.identity != nullptr) blocking_pool.emplace(2);
  // Listener TLS: 1.2 minimum (1.3 preferred by OpenSSL's default ordering), HTTP/1.1 ALPN,
  // client certificates optional at the TLS layer (a token may authenticate instead) but
  // verified against the kscribe CA when presented.
  const auto& o = opts;
  auto check = [](const std::filesystem::path& p, const char* key) {
    if (p.empty()) throw StartupError(key, "not set");
    std::ifstream in(p);
    if (!in) throw StartupError(key, "cannot read " + p.string());
  };
  check(o.cert_file, "tls.cert");
  check(o.key_file, "tls.key");
  check(o.ca_file, "tls.ca_cert");
  SSL_CTX* sctx = server_ctx.native_handle();
  SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION);
  SSL_CTX_set_options(sctx, SSL_OP_NO_RENEGOTIATION);
  try {
    server_ctx.use_certificate_chain_file(o.cert_file.string());
  } catch (const std::exception& e) {
    throw StartupError("tls.cert", o.cert_file.string() + ": " + e.what());
  }
  try {
    server_ctx.use_private_key_file(o.key_file.string(), ssl::context::pem);
  } catch (const std::exception& e) {
    throw StartupError("tls.key", o.key_file.string() + ": " + e.what());
  }
  if (SSL_CTX_check_private_key(sctx) != 1)
    throw StartupError("tls.key", "does not match the certificate " + o.cert_file.string());
  try {
    server_ctx.load_verify_file(o.ca_file.string());
  } catch (const std::exception& e) {
    throw StartupError("tls.ca_cert", o.ca_file.string() + ": " + e.what());
  }
  if (STACK_OF(X509_NAME)* cas = SSL_load_client_CA_file(o.ca_file.string().c_str()))
    SSL_CTX_set_client_CA_list(sctx, cas);
  server_ctx.set_verify_mode(ssl::verify_peer);
  SSL_CTX_set_alpn_select_cb(sctx, selectAlpn, nullptr);

  for (const auto& a : o.agents) {
    if (a.token_sha256.empty()) continue;
    auto digest = fromHex(a.token_sha256);
    if (!digest)
      throw StartupError("identity.agents", a.name + ": token_sha256 is not 64 hex digits");
    token_digests.emplace_back(a.name, *digest);
  }

  // Upstream TLS.
  const auto& u = o.upstream;
  if (u.host.empty()) throw StartupError("upstream", "no API server address");
  SSL_CTX* uctx = upstream_ctx.native_handle();
  SSL_CTX_set_min_proto_version(uctx, TLS1_2_VERSION);
  SSL_CTX_set_alpn_protos(uctx, kAlpnHttp11, sizeof kAlpnHttp11);
  try {
    if (!u.ca_pem.empty()) {
      upstream_ctx.add_certificate_authority(net::buffer(u.ca_pem));
    } else {
      upstream_ctx.set_default_verify_paths();
    }
    if (!u.client_cert_pem.empty()) {
      upstream_ctx.use_certificate_chain(net::buffer(u.client_cert_pem));
      upstream_ctx.use_private_key(net::buffer(u.client_key_pem), ssl::context::pem);
    }
  } catch (const std::exception& e) {
    throw StartupError("upstream", std::string("bad certificate or key: ") + e.what());
  }
  if (u.insecure_skip_tls_verify) {
    log::warn(
        "upstream: insecure-skip-tls-verify is set; the API server's certificate is NOT "
        "verified");
    upstream_ctx.set_verify_mode(ssl::verify_none);
  } else {
    upstream_ctx.set_verify_mode(ssl::verify_peer);
  }
  upstream_authority =
      (u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host) + ":" + u.port;
  if (!u.token_file.empty()) {
    token = trim(readFile(u.token_file));
    if (token.empty())
      throw StartupError("upstream", "cannot read token file " + u.token_file.string());
    token_read = Clock::now();
  } else {
    token = u.token;
  }

  // Listener.
  beast::error_code ec;
  auto addr = net::ip::make_address(o.listen_address, ec);
  if (ec) throw StartupError("listen.address", "not an IP address: " + o.listen_address);
  tcp::endpoint ep(addr, o.listen_port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    throw StartupError("listen", "cannot listen on " + o.listen_address + ":" +
                                     std::to_string(o.listen_port) + ": " + ec.message());
}

std::string Server::Impl::authenticateToken(std::string_view presented) const {
  const auto digest = sha256(presented);
  std::string match;
  // Compare against every agent, constant time each, no early exit.
  for (const auto& [name, want] : token_digests) {
    if (CRYPTO_memcmp(digest.data(), want.data(), want.size()) == 0 && match.empty()) match = name;
  }
  return match;
}

std::string Server::Impl::upstreamToken() {
  std::lock_guard lock(mu);
  const auto& u = opts.upstream;
  if (!u.token_file.empty() && Clock::now() - token_read > u.token_refresh) {
    token_read = Clock::now();
    std::string fresh = trim(readFile(u.token_file));
    if (fresh.empty()) {
      log::warn("upstream: cannot re-read token file " + u.token_file.string() +
                "; keeping the old token");
    } else {
      token = std::move(fresh);
    }
  }
  return token;
}

std::unique_ptr<UpstreamConn> Server::Impl::takeIdle(Worker& w) {
  const auto now = Clock::now();
  while (!w.idle.empty()) {
    auto c = std::move(w.idle.back());
    w.idle.pop_back();
    if (now - c->idle_since < kPoolIdleMax) {
      c->reused = true;
      return c;
    }
  }
  return nullptr;
}

void Server::Impl::releaseIdle(Worker& w, std::unique_ptr<UpstreamConn> c) {
  // The pool bound is shared out among the workers.
  const std::size_t per_worker =
      (opts.upstream.max_idle_connections + workers.size() - 1) / workers.size();
  if (draining || w.idle.size() >= per_worker) return;
  c->idle_since = Clock::now();
  w.idle.push_back(std::move(c));
}

void Server::Impl::connectionClosed(std::uint64_t id) {
  bool last = false;
  {
    std::lock_guard lock(mu);
    connections.erase(id);
    last = --active == 0;
  }
  if (last && draining) {
    net::post(acceptContext(), [self = shared_from_this()] { self->grace_timer.cancel(); });
  }
}

Awaitable<void> Server::Impl::acceptLoop() {
  auto self = shared_from_this();
  beast::error_code ec;
  for (;;) {
    Worker& worker = *workers[next_worker];
    next_worker = (next_worker + 1) % workers.size();
    Socket socket(worker.ioc);
    co_await acceptor.async_accept(socket, net::redirect_error(kAwait, ec));
    if (ec) {
      if (!acceptor.is_open() || draining) break;
      log::warn("accept: " + ec.message());
      // Out of descriptors and the like: back off briefly rather than spin.
      Timer t(co_await net::this_coro::executor, milliseconds(50));
      co_await t.async_wait(net::redirect_error(kAwait, ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    const bool over_cap = active.load() >= opts.limits.max_connections;
    if (over_cap && refusing.load() >= kMaxRefusingConnections) {
      socket.close(ec);
      continue;
    }
    if (over_cap) ++refusing;
    std::shared_ptr<Connection> c;
    {
      std::lock_guard lock(mu);
      const std::uint64_t id = next_id++;
      ++active;
      c = std::make_shared<Connection>(self, worker, std::move(socket), id, over_cap);
      connections.emplace(id, c);
    }
    net::co_spawn(c->executor(), c->run(c), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::error(std::string("connection ended with exception: ") + ex.what());
      } catch (...) {
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------
Server::Server(ServerOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {
  impl_->setup();
}

Server::~Server() {
  if (!impl_->threads.empty()) {
    stop();
    wait();
  }
}

std::uint16_t Server::port() const {
  beast::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

std::size_t Server::activeConnections() const { return impl_->active.load(); }

void Server::start() {
  net::co_spawn(impl_->acceptContext(), impl_->acceptLoop(), net::detached);
  for (auto& w : impl_->workers)
    impl_->threads.emplace_back([impl = impl_, ioc = &w->ioc] { ioc->run(); });
}

void Server::stop() {
  auto impl = impl_;
  if (impl->draining.exchange(true)) return;
  net::post(impl->acceptContext(), [impl] {
    beast::error_code ec;
    impl->acceptor.close(ec);
    // No new connection reaches a worker from here on: each runs until its connections are done.
    for (auto& w : impl->workers) {
      net::post(w->ioc, [w = w.get()] { w->idle.clear(); });
      w->guard.reset();
    }
    std::vector<std::shared_ptr<Connection>> live;
    {
      std::lock_guard lock(impl->mu);
      for (auto& [id, weak] : impl->connections)
        if (auto c = weak.lock()) live.push_back(std::move(c));
    }
    for (auto& c : live) net::post(c->executor(), [c] { c->drain(); });
    if (live.empty() && impl->active.load() == 0) return;
    impl->grace_timer.expires_after(impl->opts.limits.shutdown_grace);
    impl->grace_timer.async_wait([impl](const beast::error_code& e) {
      if (e) return;
      std::vector<std::shared_ptr<Connection>> rest;
      {
        std::lock_guard lock(impl->mu);
        for (auto& [id, weak] : impl->connections)
          if (auto c = weak.lock()) rest.push_back(std::move(c));
      }
      if (!rest.empty())
        log::info("shutdown grace over; closing " + std::to_string(rest.size()) + " connection(s)");
      for (auto& c : rest) net::post(c->executor(), [c] { c->abort(); });
    });
  });
}

void Server::wait() {
  for (auto& t : impl_->threads)
    if (t.joinable()) t.join();
  impl_->threads.clear();
}

}  // namespace kscribe::proxy
