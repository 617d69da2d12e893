#include "agent/pod_directory.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "proxy/log.h"

namespace kscribe {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using Stream = beast::ssl_stream<beast::tcp_stream>;

namespace {

// A watch is re-established at least this often, so a stalled stream cannot go unnoticed.
constexpr int kWatchTimeoutSeconds = 300;
// Backoff between failed list/watch attempts.
constexpr std::chrono::milliseconds kMinBackoff{500};
constexpr std::chrono::milliseconds kMaxBackoff{30'000};
// A pod object is small; a watch line longer than this is a protocol error.
constexpr std::size_t kMaxLine = 4 * 1024 * 1024;

std::string urlEncode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace

std::optional<PodInfo> podFromJson(const std::string& text) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  const auto& meta = j.value("metadata", nlohmann::json::object());
  PodInfo p;
  p.uid = meta.value("uid", "");
  if (p.uid.empty()) return std::nullopt;
  p.namespace_name = meta.value("namespace", "");
  p.name = meta.value("name", "");
  const auto& spec = j.value("spec", nlohmann::json::object());
  p.service_account = spec.value("serviceAccountName", spec.value("serviceAccount", "default"));
  if (p.service_account.empty()) p.service_account = "default";
  if (auto labels = meta.find("labels"); labels != meta.end() && labels->is_object()) {
    for (const auto& [k, v] : labels->items()) {
      if (v.is_string()) p.labels[k] = v.get<std::string>();
    }
  }
  return p;
}

struct PodDirectory::Impl : std::enable_shared_from_this<PodDirectory::Impl> {
  explicit Impl(Options o) : opts(std::move(o)), ssl_ctx(ssl::context::tls_client) {
    const auto& u = opts.upstream;
    if (!u.ca_pem.empty()) {
      ssl_ctx.add_certificate_authority(net::buffer(u.ca_pem));
    } else {
      ssl_ctx.set_default_verify_paths();
    }
    if (!u.client_cert_pem.empty()) {
      ssl_ctx.use_certificate_chain(net::buffer(u.client_cert_pem));
      ssl_ctx.use_private_key(net::buffer(u.client_key_pem), ssl::context::pem);
    }
    ssl_ctx.set_verify_mode(u.insecure_skip_tls_verify ? ssl::verify_none : ssl::verify_peer);
  }

  Options opts;
  ssl::context ssl_ctx;
  net::io_context io;
  std::thread thread;

  mutable std::mutex mu;
  std::condition_variable listed;
  std::map<std::string, PodInfo> pods;
  std::uint64_t list_count = 0;
  bool relist_wanted = false;
  bool listing = false;        // a list is in flight; it may predate the pod a caller waits for
  Stream* watching = nullptr;  // the open watch stream, closed to force a relist (io thread only)

  std::string token() const {
    if (!opts.upstream.token.empty()) return opts.upstream.token;
    if (!opts.upstream.token_file.empty()) {
      std::ifstream in(opts.upstream.token_file);
      std::string t;
      std::getline(in, t);
      return t;
    }
    return {};
  }

  std::string path(const std::string& extra) const {
    std::string p = "/api/v1/pods";
    std::string q;
    if (!opts.node_name.empty())
      q = "fieldSelector=" + urlEncode("spec.nodeName=" + opts.node_name);
    if (!extra.empty()) q += (q.empty() ? "" : "&") + extra;
    return q.empty() ? p : p + "?" + q;
  }

  net::awaitable<std::unique_ptr<Stream>> connect(beast::error_code& ec) {
    auto re = net::redirect_error(net::use_awaitable, ec);
    const auto& u = opts.upstream;
    tcp::resolver resolver(io);
    auto endpoints = co_await resolver.async_resolve(u.host, u.port, re);
    if (ec) co_return nullptr;
    auto s = std::make_unique<Stream>(io, ssl_ctx);
    const std::string sni = u.tls_server_name.empty() ? u.host : u.tls_server_name;
    if (!u.insecure_skip_tls_verify) {
      s->set_verify_callback(ssl::host_name_verification(sni));
    }
    if (!SSL_set_tlsext_host_name(s->native_handle(), sni.c_str())) {
      // An IP literal has no SNI; verification above still checks the IP SAN.
    }
    beast::get_lowest_layer(*s).expires_after(u.connect_timeout);
    co_await beast::get_lowest_layer(*s).async_connect(endpoints, re);
    if (ec) co_return nullptr;
    co_await s->async_handshake(ssl::stream_base::client, re);
    if (ec) co_return nullptr;
    co_return s;
  }

  http::request<http::empty_body> request(const std::string& target) const {
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, opts.upstream.host);
    req.set(http::field::accept, "application/json");
    req.set(http::field::user_agent, "kscribe-pod-directory");
    if (auto t = token(); !t.empty()) req.set(http::field::authorization, "Bearer " + t);
    return req;
  }

  // Lists the node's pods, replacing the cache; returns the list's resourceVersion.
  net::awaitable<std::string> list(beast::error_code& ec) {
    auto re = net::redirect_error(net::use_awaitable, ec);
    {
      std::lock_guard lock(mu);
      listing = true;
      relist_wanted = false;
    }
    struct Done {
      Impl* impl;
      ~Done() {
        std::lock_guard lock(impl->mu);
        impl->listing = false;
      }
    } done{this};
    auto s = co_await connect(ec);
    if (ec) co_return "";
    beast::get_lowest_layer(*s).expires_after(opts.lookup_timeout + std::chrono::seconds(10));
    auto req = request(path(""));
    co_await http::async_write(*s, req, re);
    if (ec) co_return "";
    beast::flat_buffer buf;
    http::response_parser<http::string_body> res;
    res.body_limit(256 * 1024 * 1024);
    co_await http::async_read(*s, buf, res, re);
    if (ec) co_return "";
    if (res.get().result() != http::status::ok) {
      ec = make_error_code(beast::errc::permission_denied);
      log::warn("pod directory: listing pods: HTTP " + std::to_string(res.get().result_int()));
      co_return "";
    }
    const auto j = nlohmann::json::parse(res.get().body(), nullptr, false);
    std::map<std::string, PodInfo> fresh;
    if (j.is_object() && j.contains("items") && j["items"].is_array()) {
      for (const auto& item : j["items"]) {
        if (auto p = podFromJson(item.dump())) fresh[p->uid] = std::move(*p);
      }
    }
    std::string rv;
    if (j.is_object() && j.contains("metadata")) rv = j["metadata"].value("resourceVersion", "");
    {
      std::lock_guard lock(mu);
      pods = std::move(fresh);
      ++list_count;
    }
    listed.notify_all();
    co_return rv;
  }

  // Applies one watch event; returns false when the watch must restart from a fresh list.
  bool apply(const std::string& line, std::string& rv) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object()) return false;
    const std::string type = j.value("type", "");
    const auto& obj = j.value("object", nlohmann::json::object());
    if (type == "ERROR") return false;  // e.g. 410 Gone: our resourceVersion is too old
    if (obj.contains("metadata")) rv = obj["metadata"].value("resourceVersion", rv);
    if (type == "BOOKMARK") return true;
    auto p = podFromJson(obj.dump());
    if (!p) return true;
    std::lock_guard lock(mu);
    if (type == "DELETED") {
      pods.erase(p->uid);
    } else {
      pods[p->uid] = std::move(*p);
    }
    return true;
  }

  net::awaitable<void> watch(std::string rv, beast::error_code& ec) {
    auto re = net::redirect_error(net::use_awaitable, ec);
    auto s = co_await connect(ec);
    if (ec) co_return;
    auto req =
        request(path("watch=true&allowWatchBookmarks=true&timeoutSeconds=" +
                     std::to_string(kWatchTimeoutSeconds) + "&resourceVersion=" + urlEncode(rv)));
    beast::get_lowest_layer(*s).expires_after(std::chrono::seconds(kWatchTimeoutSeconds + 30));
    co_await http::async_write(*s, req, re);
    if (ec) co_return;
    beast::flat_buffer buf;
    http::response_parser<http::buffer_body> res;
    res.body_limit(boost::none);
    co_await http::async_read_header(*s, buf, res, re);
    if (ec || res.get().result() != http::status::ok) co_return;
    watching = s.get();
    std::string pending;
    char chunk[16 * 1024];
    while (!res.is_done()) {
      res.get().body().data = chunk;
      res.get().body().size = sizeof chunk;
      co_await http::async_read(*s, buf, res, re);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) break;
      pending.append(chunk, sizeof chunk - res.get().body().size);
      for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
        std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        if (!line.empty() && !apply(line, rv)) {
          watching = nullptr;
          co_return;
        }
      }
      if (pending.size() > kMaxLine) break;
    }
    watching = nullptr;
  }

  net::awaitable<void> run(std::shared_ptr<Impl> self) {
    auto backoff = kMinBackoff;
    net::steady_timer timer(io);
    for (;;) {
      beast::error_code ec;
      const std::string rv = co_await list(ec);
      if (ec) {
        log::warn("pod directory: cannot list pods: " + ec.message());
        timer.expires_after(backoff);
        backoff = std::min(backoff * 2, kMaxBackoff);
        co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        if (io.stopped()) co_return;
        continue;
      }
      backoff = kMinBackoff;
      {
        std::lock_guard lock(mu);
        if (relist_wanted) continue;  // a caller asked while we listed: list again first
      }
      co_await watch(rv, ec);
      if (io.stopped()) co_return;
    }
    (void)self;
  }
};

PodDirectory::PodDirectory(Options options) : impl_(std::make_shared<Impl>(std::move(options))) {
  auto impl = impl_;
  net::co_spawn(impl->io, impl->run(impl), net::detached);
  impl->thread = std::thread([impl] { impl->io.run(); });
}

PodDirectory::~PodDirectory() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::optional<PodInfo> PodDirectory::find(const std::string& uid) {
  std::unique_lock lock(impl_->mu);
  if (auto it = impl_->pods.find(uid); it != impl_->pods.end()) return it->second;
  // Not known yet (a pod that just started): ask for one fresh list, then decide.
  // A list already in flight may predate the pod: wait for the one after it.
  const std::uint64_t target = impl_->list_count + (impl_->listing ? 2 : 1);
  impl_->relist_wanted = true;
  net::post(impl_->io, [impl = impl_] {
    if (impl->watching) beast::get_lowest_layer(*impl->watching).cancel();
  });
  impl_->listed.wait_for(lock, impl_->opts.lookup_timeout,
                         [&] { return impl_->list_count >= target; });
  if (auto it = impl_->pods.find(uid); it != impl_->pods.end()) return it->second;
  return std::nullopt;
}

std::size_t PodDirectory::size() const {
  std::lock_guard lock(impl_->mu);
  return impl_->pods.size();
}

std::uint64_t PodDirectory::lists() const {
  std::lock_guard lock(impl_->mu);
  return impl_->list_count;
}

}  // namespace kscribe
