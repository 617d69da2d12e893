#include "agent/metrics_server.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>
#include <thread>

#include <unistd.h>

#include "agent/config.h"
#include "agent/metrics.h"
#include "proxy/log.h"

namespace kscribe {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// ---- HealthChecks

void HealthChecks::addReadiness(std::string name, Check check) {
  std::lock_guard lock(mu_);
  readiness_.emplace_back(std::move(name), std::move(check));
}

void HealthChecks::addLiveness(std::string name, Check check) {
  std::lock_guard lock(mu_);
  liveness_.emplace_back(std::move(name), std::move(check));
}

void HealthChecks::setCondition(const std::string& name, bool ok, std::string reason) {
  std::lock_guard lock(mu_);
  auto& c = conditions_[name];
  c.ok = ok;
  c.reason = ok ? "" : (reason.empty() ? "not ready" : std::move(reason));
}

void HealthChecks::clear() {
  std::lock_guard lock(mu_);
  readiness_.clear();
  liveness_.clear();
  conditions_.clear();
}

namespace {

void addLine(HealthChecks::Result& r, const std::string& name, const std::string& problem) {
  if (problem.empty()) {
    r.text += "[+]" + name + " ok\n";
  } else {
    r.ok = false;
    r.text += "[-]" + name + " failed: " + problem + "\n";
  }
}

std::string runCheck(const HealthChecks::Check& check) {
  try {
    return check();
  } catch (const std::exception& e) {
    return std::string("check threw: ") + e.what();
  }
}

}  // namespace

HealthChecks::Result HealthChecks::ready() const {
  Result r;
  std::lock_guard lock(mu_);
  for (const auto& [name, c] : conditions_) addLine(r, name, c.reason);
  for (const auto& [name, check] : readiness_) addLine(r, name, runCheck(check));
  r.text += r.ok ? "readyz check passed\n" : "readyz check failed\n";
  return r;
}

HealthChecks::Result HealthChecks::live() const {
  Result r;
  std::lock_guard lock(mu_);
  r.text += "[+]ping ok\n";  // this thread answered: the process is alive
  for (const auto& [name, check] : liveness_) addLine(r, name, runCheck(check));
  r.text += r.ok ? "healthz check passed\n" : "healthz check failed\n";
  return r;
}

HealthChecks& health() {
  static HealthChecks h;
  return h;
}

// ---- MetricsServer

namespace {
// A probe or scrape request is a request line and a few headers; anything larger is not one.
constexpr std::size_t kMaxRequestHead = 8 * 1024;
// Back off after accept() fails (EMFILE and the like) instead of spinning.
constexpr std::chrono::milliseconds kAcceptRetry{100};
}  // namespace

struct MetricsServer::Impl {
  Impl(MetricsServerOptions o, metrics::Registry& r, HealthChecks& h)
      : options(std::move(o)), registry(r), health(h) {}

  asio::awaitable<void> acceptLoop();
  asio::awaitable<void> session(tcp::socket socket);
  http::response<http::string_body> handle(const http::request<http::empty_body>& req) const;

  MetricsServerOptions options;
  metrics::Registry& registry;
  HealthChecks& health;
  // Before io: the sessions io's destructor destroys still decrement `active`.
  std::atomic<std::size_t> active{0};
  std::atomic<bool> stopped{false};
  asio::io_context io{1};
  tcp::acceptor acceptor{io};            // after io: destroyed first
  std::set<beast::tcp_stream*> streams;  // open sessions; touched only on the io thread
  std::thread thread;
};

MetricsServer::MetricsServer(MetricsServerOptions options, metrics::Registry& registry,
                             HealthChecks& health)
    : impl_(std::make_shared<Impl>(std::move(options), registry, health)) {
  boost::system::error_code ec;
  const std::string where = impl_->options.address + ":" + std::to_string(impl_->options.port);
  auto address = asio::ip::make_address(impl_->options.address, ec);
  if (ec)
    throw std::runtime_error("metrics: \"" + impl_->options.address + "\" is not an IP address");
  tcp::endpoint endpoint(address, impl_->options.port);
  auto& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("metrics: cannot listen on " + where + ": " + ec.message());
}

MetricsServer::~MetricsServer() { stop(); }

std::uint16_t MetricsServer::port() const {
  boost::system::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

std::size_t MetricsServer::activeConnections() const { return impl_->active.load(); }

void MetricsServer::start() {
  Impl* impl = impl_.get();
  asio::co_spawn(impl->io, impl->acceptLoop(), asio::detached);
  impl->thread = std::thread([impl] { impl->io.run(); });
}

void MetricsServer::stop() {
  if (impl_->stopped.exchange(true)) return;
  Impl* impl = impl_.get();
  if (!impl->thread.joinable()) {
    boost::system::error_code ec;
    impl->acceptor.close(ec);
    return;
  }
  // Close the listener and every session on the io thread; their pending operations complete
  // with errors, the coroutines return, and run() ends for want of work.
  asio::post(impl->io, [impl] {
    boost::system::error_code ec;
    impl->acceptor.close(ec);
    for (auto* s : impl->streams) s->socket().close(ec);
  });
  impl->thread.join();
}

asio::awaitable<void> MetricsServer::Impl::acceptLoop() {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      log::warn("metrics: accept failed: " + ec.message());
      asio::steady_timer t(io, kAcceptRetry);
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (active.load() >= options.max_connections) {
      socket.close(ec);  // over the cap: closed unread, the scraper retries
      continue;
    }
    asio::co_spawn(io, session(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> MetricsServer::Impl::session(tcp::socket socket) {
  ++active;
  beast::tcp_stream stream(std::move(socket));
  streams.insert(&stream);
  struct Release {
    Impl& impl;
    beast::tcp_stream* stream;
    ~Release() {
      impl.streams.erase(stream);
      --impl.active;
    }
  } release{*this, &stream};
  beast::flat_buffer buffer(kMaxRequestHead);
  boost::system::error_code ec;
  for (;;) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(kMaxRequestHead);
    stream.expires_after(options.timeout);
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;  // closed, timed out, malformed or a body: nothing worth answering
    auto res = handle(parser.get());
    stream.expires_after(options.timeout);
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !res.keep_alive()) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

http::response<http::string_body> MetricsServer::Impl::handle(
    const http::request<http::empty_body>& req) const {
  http::response<http::string_body> res;
  res.version(req.version());
  res.keep_alive(req.keep_alive());
  res.set(http::field::server, "kscribe");
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  const bool head = req.method() == http::verb::head;
  if (req.method() != http::verb::get && !head) {
    res.result(http::status::method_not_allowed);
    res.set(http::field::allow, "GET, HEAD");
    res.body() = "method not allowed\n";
  } else if (target == "/metrics") {
    res.result(http::status::ok);
    res.set(http::field::content_type, metrics::kContentType);
    res.body() = registry.render();
  } else if (target == "/healthz" || target == "/livez") {
    auto r = health.live();
    res.result(r.ok ? http::status::ok : http::status::service_unavailable);
    res.body() = std::move(r.text);
  } else if (target == "/readyz") {
    auto r = health.ready();
    res.result(r.ok ? http::status::ok : http::status::service_unavailable);
    res.body() = std::move(r.text);
  } else {
    res.result(http::status::not_found);
    res.body() = "not found: try /metrics, /healthz or /readyz\n";
  }
  res.prepare_payload();
  if (head) res.body().clear();  // Content-Length stays that of the GET response
  return res;
}

// ---- LoopWatchdog

struct LoopWatchdog::State {
  explicit State(asio::io_context& io) : timer(io) {}
  asio::steady_timer timer;
  std::chrono::milliseconds interval{1000};
  std::atomic<std::int64_t> last_beat_ns{0};

  static std::int64_t nowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  static void arm(const std::shared_ptr<State>& s) {
    s->timer.expires_after(s->interval);
    s->timer.async_wait([weak = std::weak_ptr<State>(s)](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->last_beat_ns.store(nowNs());
      arm(self);
    });
  }
};

LoopWatchdog::LoopWatchdog(asio::io_context& io, std::chrono::milliseconds interval,
                           std::chrono::milliseconds stale_after)
    : state_(std::make_shared<State>(io)), stale_after_(stale_after) {
  state_->interval = interval;
  state_->last_beat_ns.store(State::nowNs());
  State::arm(state_);
}

// Destroy from the loop's thread or after it stopped: a steady_timer is not thread-safe.
LoopWatchdog::~LoopWatchdog() = default;

std::string LoopWatchdog::check() const {
  const auto age = std::chrono::nanoseconds(State::nowNs() - state_->last_beat_ns.load());
  if (age <= stale_after_) return "";
  return "event loop unresponsive for " +
         std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(age).count()) + "ms";
}

// ---- The daemon's metrics runtime

namespace {
// A stuck loop is declared dead after this long; the kubelet's probe timeout and failure
// threshold add to it before a restart.
constexpr std::chrono::milliseconds kLoopBeat{1'000};
constexpr std::chrono::milliseconds kLoopStaleAfter{15'000};

std::string writable(const std::filesystem::path& dir) {
  if (::access(dir.c_str(), W_OK | X_OK) == 0) return "";
  return dir.string() + " is not writable: " + std::strerror(errno);
}
}  // namespace

MetricsRuntime::MetricsRuntime(std::unique_ptr<LoopWatchdog> watchdog,
                               std::unique_ptr<MetricsServer> server)
    : watchdog_(std::move(watchdog)), server_(std::move(server)) {}

MetricsRuntime::~MetricsRuntime() {
  server_->stop();
  health().clear();
}

std::unique_ptr<MetricsRuntime> startMetrics(const Config& config, asio::io_context& loop) {
  if (!config.metrics.enabled) return nullptr;
  MetricsServerOptions options;
  options.address = config.metrics.address;
  options.port = config.metrics.port;
  std::unique_ptr<MetricsServer> server;
  try {
    server = std::make_unique<MetricsServer>(options, metrics::registry(), health());
  } catch (const std::runtime_error& e) {
    throw ConfigError(config.metrics.port == 0 ? "metrics.address" : "metrics.port", e.what());
  }
  auto& h = health();
  h.clear();
  h.setCondition(kReadyProxy, false, "proxy listener not bound yet");
  if (config.attribution == "required")
    h.setCondition(kReadyAttribution, false, "BPF program not attached yet");
  h.addReadiness("recorder",
                 [sessions = config.sessions.api.storage, audit = config.audit.path.parent_path()] {
                   auto w = writable(sessions);
                   return w.empty() ? writable(audit) : w;
                 });
  auto watchdog = std::make_unique<LoopWatchdog>(loop, kLoopBeat, kLoopStaleAfter);
  h.addLiveness("event-loop", [dog = watchdog.get()] { return dog->check(); });
  metrics::get();  // define every kscribe metric before the first scrape
  server->start();
  log::info("metrics on http://" + config.metrics.address + ":" + std::to_string(server->port()) +
            " (/metrics, /healthz, /readyz)");
  return std::make_unique<MetricsRuntime>(std::move(watchdog), std::move(server));
}

}  // namespace kscribe
