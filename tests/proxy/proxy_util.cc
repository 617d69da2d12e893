#include <utility>

#include "proxy/proxy_util.h"

#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace kscribe::test {
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;

void run(const std::string& command) {
  if (std::system((command + " >/dev/null 2>&1").c_str()) != 0)
    throw std::runtime_error("command failed: " + command);
}

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

namespace {
void makeCa(const std::filesystem::path& dir, const std::string& name) {
  run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
      (dir / (name + ".key")).string() + " -out " + (dir / (name + ".crt")).string() +
      " -days 2 -subj /CN=" + name);
}
void issue(const std::filesystem::path& dir, const std::string& ca, const std::string& name,
           const std::string& san, const std::string& usage) {
  run("openssl req -x509 -CA " + (dir / (ca + ".crt")).string() + " -CAkey " +
      (dir / (ca + ".key")).string() +
      " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
      (dir / (name + ".key")).string() + " -out " + (dir / (name + ".crt")).string() +
      " -days 2 -subj /CN=" + name + " -addext 'subjectAltName=" + san +
      "' -addext 'basicConstraints=critical,CA:FALSE' -addext 'extendedKeyUsage=" + usage + "'");
}
}  // namespace

const Pki& Pki::get() {
  static const Pki pki = [] {
    ::signal(SIGPIPE, SIG_IGN);  // peers closing under a blocking write must not kill the test
    Pki p;
    char tmpl[] = "/tmp/kscribe-proxy-pki-XXXXXX";
    p.dir = ::mkdtemp(tmpl);
    // Each test runs in a process of its own (ctest): the directory goes when the process ends.
    static const struct RemoveAtExit {
      std::filesystem::path dir;
      ~RemoveAtExit() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      }
    } remove_at_exit{p.dir};
    makeCa(p.dir, "ca");
    makeCa(p.dir, "rogue-ca");
    makeCa(p.dir, "upstream-ca");
    issue(p.dir, "ca", "server", "DNS:localhost,IP:127.0.0.1", "serverAuth");
    issue(p.dir, "ca", "alice", "URI:spiffe://kscribe.local/agent/alice", "clientAuth");
    issue(p.dir, "ca", "other", "URI:spiffe://elsewhere/agent/alice", "clientAuth");
    issue(p.dir, "rogue-ca", "rogue", "URI:spiffe://kscribe.local/agent/alice", "clientAuth");
    issue(p.dir, "upstream-ca", "upstream", "DNS:localhost,IP:127.0.0.1", "serverAuth");
    p.ca_crt = p.dir / "ca.crt";
    p.ca_key = p.dir / "ca.key";
    p.server_crt = p.dir / "server.crt";
    p.server_key = p.dir / "server.key";
    p.alice_crt = p.dir / "alice.crt";
    p.alice_key = p.dir / "alice.key";
    p.other_td_crt = p.dir / "other.crt";
    p.other_td_key = p.dir / "other.key";
    p.rogue_crt = p.dir / "rogue.crt";
    p.rogue_key = p.dir / "rogue.key";
    p.upstream_ca = p.dir / "upstream-ca.crt";
    p.upstream_crt = p.dir / "upstream.crt";
    p.upstream_key = p.dir / "upstream.key";
    return p;
  }();
  return pki;
}

std::string Response::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

// ------------------------------------------------------------------------------------------
TlsClient::TlsClient(std::uint16_t port, Options o) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
  setTimeout(o.timeout);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ctx_ = ctx;
  SSL_CTX_load_verify_locations(ctx, Pki::get().ca_crt.c_str(), nullptr);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (!o.cert.empty()) {
    SSL_CTX_use_certificate_chain_file(ctx, o.cert.c_str());
    SSL_CTX_use_PrivateKey_file(ctx, o.key.c_str(), SSL_FILETYPE_PEM);
  }
  if (!o.alpn.empty()) {
    std::string wire;
    for (const auto& p : o.alpn) {
      wire += static_cast<char>(p.size());
      wire += p;
    }
    SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned>(wire.size()));
  }
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd_);
  SSL_set_tlsext_host_name(ssl, "localhost");
  SSL_set1_host(ssl, "localhost");
  if (SSL_connect(ssl) != 1) {
    SSL_free(ssl);
    return;
  }
  ssl_ = ssl;
}

TlsClient::~TlsClient() {
  if (ssl_) SSL_free(static_cast<SSL*>(ssl_));
  if (ctx_) SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
  if (fd_ >= 0) ::close(fd_);
}

void TlsClient::setTimeout(std::chrono::milliseconds t) {
  timeval tv{};
  tv.tv_sec = t.count() / 1000;
  tv.tv_usec = (t.count() % 1000) * 1000;
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

std::string TlsClient::alpn() const {
  const unsigned char* p = nullptr;
  unsigned n = 0;
  SSL_get0_alpn_selected(static_cast<SSL*>(ssl_), &p, &n);
  return std::string(reinterpret_cast<const char*>(p), n);
}

bool TlsClient::send(const std::string& data) {
  if (!ssl_) return false;
  std::size_t off = 0;
  while (off < data.size()) {
    const int n = SSL_write(static_cast<SSL*>(ssl_), data.data() + off,
                            static_cast<int>(std::min<std::size_t>(data.size() - off, 1 << 20)));
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

bool TlsClient::fill() {
  if (!ssl_ || eof_) return false;
  char tmp[16384];
  const int n = SSL_read(static_cast<SSL*>(ssl_), tmp, sizeof tmp);
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  buf_.append(tmp, static_cast<std::size_t>(n));
  return true;
}

std::string TlsClient::readSome(std::size_t n) {
  if (buf_.empty()) fill();
  std::string out = buf_.substr(0, n);
  buf_.erase(0, out.size());
  return out;
}

bool TlsClient::closedByPeer() {
  if (!buf_.empty()) return false;
  if (!ssl_) return true;
  char tmp[256];
  const int n = SSL_read(static_cast<SSL*>(ssl_), tmp, sizeof tmp);
  if (n > 0) {
    buf_.append(tmp, static_cast<std::size_t>(n));
    return false;
  }
  const int err = SSL_get_error(static_cast<SSL*>(ssl_), n);
  if (err == SSL_ERROR_ZERO_RETURN) return true;
  // EOF without close_notify reads as SSL_ERROR_SYSCALL/SSL with errno 0; a timeout has EAGAIN.
  return !(errno == EAGAIN || errno == EWOULDBLOCK) || err == SSL_ERROR_SSL;
}

Response TlsClient::read(bool head_request) {
  Response r;
  std::size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return r;
  }
  const std::string head = buf_.substr(0, end + 2);
  buf_.erase(0, end + 4);
  std::istringstream lines(head);
  std::string line;
  std::getline(lines, line);
  if (line.size() < 12) return r;
  r.status = std::stoi(line.substr(9, 3));
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (r.headers.count(name)) {
      r.headers[name] += ", " + value;
    } else {
      r.headers[name] = value;
    }
  }
  if (head_request || r.status / 100 == 1 || r.status == 204 || r.status == 304) {
    r.complete = true;
    return r;
  }
  if (r.header("transfer-encoding").find("chunked") != std::string::npos) {
    for (;;) {
      std::size_t eol;
      while ((eol = buf_.find("\r\n")) == std::string::npos)
        if (!fill()) return r;
      const std::size_t size = std::stoul(buf_.substr(0, eol), nullptr, 16);
      buf_.erase(0, eol + 2);
      while (buf_.size() < size + 2)
        if (!fill()) return r;
      r.body += buf_.substr(0, size);
      buf_.erase(0, size + 2);
      if (size == 0) break;
    }
    r.complete = true;
  } else if (!r.header("content-length").empty()) {
    const std::size_t len = std::stoul(r.header("content-length"));
    while (buf_.size() < len)
      if (!fill()) return r;
    r.body = buf_.substr(0, len);
    buf_.erase(0, len);
    r.complete = true;
  } else {
    while (fill()) {
    }
    r.body = std::move(buf_);
    buf_.clear();
    r.complete = true;
  }
  return r;
}

// ------------------------------------------------------------------------------------------
bool SeenRequest::has(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (beast::iequals(k, name)) return true;
  return false;
}
std::string SeenRequest::get(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (beast::iequals(k, name)) return v;
  return {};
}

struct Upstream::Impl {
  Upstream& owner;
  net::io_context ioc;
  ssl::context ctx{ssl::context::tls_server};
  tcp::acceptor acceptor{ioc};
  std::thread accept_thread;
  std::mutex mu;
  std::condition_variable cv;
  bool watch_released = false;
  bool stopping = false;
  std::vector<SeenRequest> seen;
  std::vector<std::thread> threads;
  std::vector<int> fds;

  explicit Impl(Upstream& o) : owner(o) {}

  void serve(tcp::socket socket);
  bool handle(ssl::stream<tcp::socket>& s, beast::flat_buffer& buffer,
              http::request<http::string_body>& req);
};

namespace {
std::string query(const std::string& target, const std::string& key) {
  const auto q = target.find('?');
  if (q == std::string::npos) return {};
  std::string rest = target.substr(q + 1);
  std::istringstream in(rest);
  std::string kv;
  while (std::getline(in, kv, '&')) {
    if (kv.rfind(key + "=", 0) == 0) return kv.substr(key.size() + 1);
  }
  return {};
}
std::string path(const std::string& target) { return target.substr(0, target.find('?')); }
bool writeAll(ssl::stream<tcp::socket>& s, const std::string& data) {
  beast::error_code ec;
  net::write(s, net::buffer(data), ec);
  return !ec;
}
}  // namespace

bool Upstream::Impl::handle(ssl::stream<tcp::socket>& s, beast::flat_buffer& buffer,
                            http::request<http::string_body>& req) {
  const std::string target(req.target());
  const std::string p = path(target);
  SeenRequest seen_req;
  seen_req.method = std::string(req.method_string());
  seen_req.target = target;
  for (const auto& f : req)
    seen_req.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  seen_req.body = req.body();
  {
    std::lock_guard lock(mu);
    seen.push_back(seen_req);
  }
  const bool keep = req.keep_alive();
  if (p == "/echo") {
    std::string body = "method=" + seen_req.method + "\n";
    for (const auto& [k, v] : seen_req.headers) body += k + ": " + v + "\n";
    body += "\n" + req.body();
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "text/plain");
    res.keep_alive(keep);
    if (req.method() == http::verb::head) {
      res.content_length(body.size());
      http::response_serializer<http::string_body> sr{res};
      beast::error_code ec;
      http::write_header(s, sr, ec);
      return !ec && keep;
    }
    res.body() = body;
    res.prepare_payload();
    beast::error_code ec;
    http::write(s, res, ec);
    return !ec && keep;
  }
  if (p == "/chunked") {
    const int n = std::stoi(query(target, "n").empty() ? "3" : query(target, "n"));
    std::string out =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < n; ++i) {
      const std::string c = "chunk-" + std::to_string(i) + "\n";
      char size[16];
      std::snprintf(size, sizeof size, "%zx\r\n", c.size());
      out += size + c + "\r\n";
    }
    out += "0\r\n\r\n";
    return writeAll(s, out) && keep;
  }
  if (p == "/status") {
    const std::string code = query(target, "code");
    std::string out = "HTTP/1.1 " + code + " X\r\nETag: \"abc\"\r\n";
    if (code == "304") out += "Content-Length: 1234\r\n";  // 304 carries no body regardless
    out += "\r\n";
    return writeAll(s, out) && keep;
  }
  if (p == "/early-hints") {
    return writeAll(
               s,
               "HTTP/1.1 103 Early Hints\r\nLink: </openapi/v3>; rel=preload\r\n\r\n"
               "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfinal") &&
           keep;
  }
  if (p == "/watch") {
    std::string out =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string e1 = "{\"type\":\"ADDED\"}\n";
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", e1.size());
    if (!writeAll(s, out + size + e1 + "\r\n")) return false;
    {
      std::unique_lock lock(mu);
      cv.wait_for(lock, std::chrono::seconds(10), [&] { return watch_released || stopping; });
    }
    const std::string e2 = "{\"type\":\"MODIFIED\"}\n";
    std::snprintf(size, sizeof size, "%zx\r\n", e2.size());
    return writeAll(s, size + e2 + "\r\n0\r\n\r\n") && keep;
  }
  if (p == "/big") {
    const std::uint64_t size = std::stoull(query(target, "size"));
    if (!writeAll(s,
                  "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                      std::to_string(size) + "\r\n\r\n"))
      return false;
    std::string block(64 * 1024, 'x');
    std::uint64_t left = size;
    while (left > 0) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, block.size()));
      beast::error_code ec;
      net::write(s, net::buffer(block.data(), n), ec);
      if (ec) return false;
      left -= n;
      owner.big_bytes_sent += n;
    }
    return keep;
  }
  if (p == "/hang") {
    char c;
    beast::error_code ec;
    s.next_layer().read_some(net::buffer(&c, 1), ec);  // until the proxy gives up
    return false;
  }
  if (p == "/close") return false;
  if (p == "/eof") {
    writeAll(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close-body");
    return false;
  }
  if (p == "/upgrade") {
    if (!beast::iequals(req[http::field::upgrade], "test-proto")) {
      writeAll(s, "HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n");
      return false;
    }
    if (!writeAll(s,
                  "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "
                  "test-proto\r\n\r\nhello-from-upstream\n"))
      return false;
    // Echo upper-cased bytes until the peer closes.
    std::string pending(static_cast<const char*>(buffer.data().data()), buffer.size());
    buffer.consume(buffer.size());
    for (;;) {
      for (auto& c : pending) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      if (!pending.empty() && !writeAll(s, pending)) return false;
      char tmp[4096];
      beast::error_code ec;
      const std::size_t n = s.read_some(net::buffer(tmp), ec);
      if (ec) return false;
      pending.assign(tmp, n);
    }
  }
  writeAll(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  return keep;
}

void Upstream::Impl::serve(tcp::socket socket) {
  ++owner.connections;
  ssl::stream<tcp::socket> s(std::move(socket), ctx);
  beast::error_code ec;
  s.handshake(ssl::stream_base::server, ec);
  if (ec) return;
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    http::read(s, buffer, parser, ec);
    if (ec) break;
    if (!handle(s, buffer, parser.get())) break;
  }
  s.shutdown(ec);
}

Upstream::Upstream() : impl_(std::make_unique<Impl>(*this)) {
  const auto& pki = Pki::get();
  impl_->ctx.use_certificate_chain_file(pki.upstream_crt.string());
  impl_->ctx.use_private_key_file(pki.upstream_key.string(), ssl::context::pem);
  tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen();
  port_ = impl_->acceptor.local_endpoint().port();
  impl_->accept_thread = std::thread([this] {
    for (;;) {
      beast::error_code ec;
      tcp::socket socket(impl_->ioc);
      impl_->acceptor.accept(socket, ec);
      if (ec) return;
      std::lock_guard lock(impl_->mu);
      if (impl_->stopping) return;
      impl_->fds.push_back(socket.native_handle());
      impl_->threads.emplace_back(
          [this, s = std::move(socket)]() mutable { impl_->serve(std::move(s)); });
    }
  });
}

Upstream::~Upstream() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    impl_->cv.notify_all();
    for (int fd : impl_->fds) ::shutdown(fd, SHUT_RDWR);
  }
  ::shutdown(impl_->acceptor.native_handle(), SHUT_RDWR);
  impl_->accept_thread.join();
  for (auto& t : impl_->threads) t.join();
}

std::vector<SeenRequest> Upstream::seen() {
  std::lock_guard lock(impl_->mu);
  return impl_->seen;
}

SeenRequest Upstream::last() {
  std::lock_guard lock(impl_->mu);
  return impl_->seen.empty() ? SeenRequest{} : impl_->seen.back();
}

void Upstream::releaseWatch() {
  std::lock_guard lock(impl_->mu);
  impl_->watch_released = true;
  impl_->cv.notify_all();
}

}  // namespace kscribe::test
