#include "agent/s3_client.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "agent/config.h"
#include "agent/durable_file.h"
#include "agent/encoding.h"
#include "proxy/log.h"

namespace kscribe {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string hostHeader() const {
    bool default_port = (tls && port == "443") || (!tls && port == "80");
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return default_port ? h : h + ":" + port;
  }
};

Url parseEndpoint(const std::string& endpoint) {
  Url u;
  std::string rest;
  if (endpoint.rfind("https://", 0) == 0) {
    u.tls = true;
    rest = endpoint.substr(8);
  } else if (endpoint.rfind("http://", 0) == 0) {
    rest = endpoint.substr(7);
  } else {
    throw ConfigError("shipping.endpoint", "\"" + endpoint + "\" must start with http(s)://");
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) rest = rest.substr(0, slash);
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    u.host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    u.port = rest.size() > 1 && rest[0] == ':' ? rest.substr(1) : "";
  } else if (auto colon = rest.find(':'); colon != std::string::npos) {
    u.host = rest.substr(0, colon);
    u.port = rest.substr(colon + 1);
  } else {
    u.host = rest;
  }
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  return u;
}

std::string xmlValue(const std::string& body, const std::string& tag) {
  auto open = body.find("<" + tag + ">");
  if (open == std::string::npos) return "";
  open += tag.size() + 2;
  auto close = body.find("</" + tag + ">", open);
  return close == std::string::npos ? "" : body.substr(open, close - open);
}

std::string contentMd5(std::string_view body) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(body.data(), body.size(), md, &len, EVP_md5(), nullptr);
  return base64(std::string_view(reinterpret_cast<const char*>(md), len));
}

struct Response {
  unsigned status = 0;
  std::string body;
  std::string etag;
  // Set when the TLS handshake failed for a TLS reason (not a reset): why, in words. Such a
  // failure does not heal by retrying (an untrusted or mismatched certificate).
  std::string tls_error;
};

}  // namespace

std::string S3Result::describe() const {
  if (ok) return "ok";
  std::string s = status ? std::to_string(status) + " " : "";
  s += code.empty() ? "error" : code;
  if (!message.empty()) s += ": " + message;
  if (attempts > 1) s += " (after " + std::to_string(attempts) + " attempts)";
  return s;
}

std::chrono::milliseconds backoffDelay(std::uint32_t attempt, std::chrono::milliseconds base,
                                       std::chrono::milliseconds cap, double uniform01) {
  double ceiling = static_cast<double>(base.count());
  for (std::uint32_t i = 1; i < attempt && ceiling < static_cast<double>(cap.count()); ++i)
    ceiling *= 2;
  ceiling = std::min(ceiling, static_cast<double>(cap.count()));
  return std::chrono::milliseconds(static_cast<std::int64_t>(ceiling * uniform01));
}

struct S3Client::Impl {
  S3Options opt;
  sigv4::Credentials creds;
  Sleep sleep;
  Clock now;
  Url url;
  std::optional<asio::ssl::context> tls;
  mutable std::mutex mu;
  S3Stats stats;
  std::mt19937_64 rng{std::random_device{}()};
  std::atomic<bool> cancelled{false};
  std::mutex sleep_mu;
  std::condition_variable sleep_cv;

  // One HTTP exchange on a fresh connection. Transport errors come back as `ec`.
  asio::awaitable<void> exchangeCo(http::request<http::string_body>& req, Response& out,
                                   error_code& ec) {
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    auto results = co_await resolver.async_resolve(url.host, url.port, token);
    if (ec) co_return;
    beast::tcp_stream tcp_stream(ex);
    tcp_stream.expires_after(opt.timeout);
    co_await tcp_stream.async_connect(results, token);
    if (ec) co_return;
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::max<std::uint64_t>(opt.part_size, 64ULL << 20));
    if (req.method() == http::verb::head) parser.skip(true);  // HEAD: headers only
    beast::flat_buffer buffer;
    if (!tls) {
      tcp_stream.expires_after(opt.timeout);
      co_await http::async_write(tcp_stream, req, token);
      if (ec) co_return;
      tcp_stream.expires_after(opt.timeout);
      co_await http::async_read(tcp_stream, buffer, parser, token);
      if (ec) co_return;
      tcp_stream.socket().shutdown(tcp::socket::shutdown_both, ec);
      ec = {};
    } else {
      beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), *tls);
      const std::string host = tlsHost(req);
      // SNI carries a host name without the port, and never an IP literal (RFC 6066 3).
      error_code ip_ec;
      asio::ip::make_address(host, ip_ec);
      if (ip_ec && !SSL_set_tlsext_host_name(stream.native_handle(), host.c_str())) {
        ec = error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
        co_return;
      }
      stream.set_verify_callback(asio::ssl::host_name_verification(host));
      beast::get_lowest_layer(stream).expires_after(opt.timeout);
      co_await stream.async_handshake(asio::ssl::stream_base::client, token);
      if (ec) {
        if (ec.category() == asio::error::get_ssl_category()) {
          out.tls_error = ec.message();
          const long verify = ::SSL_get_verify_result(stream.native_handle());
          if (verify != X509_V_OK)
            out.tls_error += std::string(": ") + ::X509_verify_cert_error_string(verify);
        }
        co_return;
      }
      beast::get_lowest_layer(stream).expires_after(opt.timeout);
      co_await http::async_write(stream, req, token);
      if (ec) co_return;
      beast::get_lowest_layer(stream).expires_after(opt.timeout);
      co_await http::async_read(stream, buffer, parser, token);
      if (ec) co_return;
      error_code ignored;
      beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
    }
    auto res = parser.release();
    out.status = res.result_int();
    out.etag = std::string(res[http::field::etag]);
    out.body = std::move(res.body());
  }

  std::string tlsHost(const http::request<http::string_body>& req) const {
    std::string h(req[http::field::host]);
    if (auto c = h.rfind(':'); c != std::string::npos && h.find(']') == std::string::npos)
      h = h.substr(0, c);
    return h;
  }

  error_code exchange(http::request<http::string_body>& req, Response& out) {
    asio::io_context ioc;
    error_code ec;
    asio::co_spawn(ioc, exchangeCo(req, out, ec), asio::detached);
    ioc.run();
    return ec;
  }

  // Signs and sends one request (no retries).
  S3Result once(const std::string& method, const std::string& key, const sigv4::Pairs& query,
                const std::string& body,
                const std::vector<std::pair<std::string, std::string>>& extra_headers) {
    sigv4::Request sr;
    sr.method = method;
    std::string host = url.hostHeader();
    std::string path;
    if (opt.virtual_hosted) {
      host = opt.bucket + "." + host;
      path = "/" + key;
    } else {
      path = "/" + opt.bucket + (key.empty() ? "" : "/" + key);
    }
    sr.path = path;
    sr.query = query;
    sr.headers = {{"host", host}};
    sr.payload_hash = durable::sha256Hex(body);
    sr.headers.emplace_back("x-amz-content-sha256", sr.payload_hash);
    for (const auto& h : extra_headers) sr.headers.push_back(h);
    sigv4::Signature sig = sigv4::signHeaders(sr, creds, opt.region, "s3", now());

    http::request<http::string_body> req;
    req.method_string(method);
    std::string target = sigv4::uriEncode(path, true);
    if (!query.empty()) target += "?" + sigv4::canonicalQuery(query);
    req.target(target);
    req.version(11);
    for (const auto& [k, v] : sr.headers) req.set(k, v);
    req.set(http::field::authorization, sig.authorization);
    req.set(http::field::user_agent, "kscribe-shipper");
    req.body() = body;
    if (method == "PUT" || method == "POST" || !body.empty()) req.prepare_payload();

    Response res;
    error_code ec = exchange(req, res);
    {
      std::lock_guard lock(mu);
      ++stats.requests;
      if (!ec) stats.bytes_sent += body.size();
    }
    S3Result r;
    r.attempts = 1;
    if (ec && !res.tls_error.empty()) {
      r.code = "TLS";
      r.message = "TLS handshake with " + opt.endpoint + " failed: " + res.tls_error +
                  " — check shipping.ca_file (" +
                  (opt.ca_file.empty() ? std::string("unset: the system trust store")
                                       : opt.ca_file.string()) +
                  ") and that the endpoint's certificate names its host";
      r.retryable = false;
      return r;
    }
    if (ec) {
      r.code = "Network";
      r.message = ec == beast::error::timeout ? "timed out talking to " + opt.endpoint
                                              : ec.message() + " (" + opt.endpoint + ")";
      r.retryable = true;
      return r;
    }
    r.status = res.status;
    r.etag = res.etag;
    // CompleteMultipartUpload can fail inside a 200 response.
    bool error_body = res.body.find("<Error>") != std::string::npos;
    if (res.status >= 200 && res.status < 300 && !error_body) {
      r.ok = true;
      r.body = std::move(res.body);
      return r;
    }
    r.code = xmlValue(res.body, "Code");
    r.message = xmlValue(res.body, "Message");
    if (r.code.empty()) r.code = "HTTP" + std::to_string(res.status);
    r.retryable = res.status >= 500 || res.status == 429 || r.code == "SlowDown" ||
                  r.code == "RequestTimeout" || r.code == "InternalError" ||
                  (error_body && res.status == 200);
    if (r.code == "RequestTimeTooSkewed") {
      r.message = "this host's clock differs too much from the server's (" + r.message +
                  "); fix the clock (NTP) — requests are signed with the local time";
    } else if (r.code == "InvalidAccessKeyId" || r.code == "SignatureDoesNotMatch" ||
               r.code == "AccessDenied") {
      r.message +=
          " — check the S3 credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
          "the shared credentials file) and the bucket policy";
    }
    return r;
  }

  S3Result withRetries(const std::string& method, const std::string& key, const sigv4::Pairs& query,
                       const std::string& body,
                       const std::vector<std::pair<std::string, std::string>>& headers) {
    S3Result r;
    for (std::uint32_t attempt = 1;; ++attempt) {
      r = once(method, key, query, body, headers);
      r.attempts = attempt;
      if (r.ok || !r.retryable || attempt > opt.max_retries || cancelled) break;
      double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
      auto delay = backoffDelay(attempt, opt.backoff_base, opt.backoff_cap, u);
      {
        std::lock_guard lock(mu);
        ++stats.retries;
      }
      log::debug("s3: " + method + " " + key + ": " + r.describe() + "; retrying in " +
                 std::to_string(delay.count()) + "ms");
      sleep(delay);
    }
    if (!r.ok) {
      std::lock_guard lock(mu);
      ++stats.failures;
    }
    return r;
  }

  S3Result put(const std::string& key, const std::string& body, const std::string& ctype) {
    return withRetries("PUT", key, {}, body,
                       {{"content-md5", contentMd5(body)}, {"content-type", ctype}});
  }

  S3Result multipart(const std::string& key, std::ifstream& in, std::uint64_t size,
                     const std::string& ctype) {
    S3Result r = withRetries("POST", key, {{"uploads", ""}}, "", {{"content-type", ctype}});
    if (!r.ok) return r;
    const std::string upload_id = xmlValue(r.body, "UploadId");
    if (upload_id.empty()) {
      r.ok = false;
      r.code = "BadResponse";
      r.message = "CreateMultipartUpload returned no UploadId";
      return r;
    }
    std::string complete = "<CompleteMultipartUpload>";
    std::string part;
    std::uint64_t sent = 0;
    for (int number = 1; sent < size; ++number) {
      std::uint64_t n = std::min<std::uint64_t>(opt.part_size, size - sent);
      part.resize(n);
      in.read(part.data(), static_cast<std::streamsize>(n));
      if (static_cast<std::uint64_t>(in.gcount()) != n) {
        r.ok = false;
        r.code = "LocalRead";
        r.message = "file shrank while uploading";
        abort(key, upload_id);
        return r;
      }
      S3Result p =
          withRetries("PUT", key, {{"partNumber", std::to_string(number)}, {"uploadId", upload_id}},
                      part, {{"content-md5", contentMd5(part)}});
      if (!p.ok) {
        abort(key, upload_id);
        return p;
      }
      complete += "<Part><PartNumber>" + std::to_string(number) + "</PartNumber><ETag>" + p.etag +
                  "</ETag></Part>";
      sent += n;
    }
    complete += "</CompleteMultipartUpload>";
    r = withRetries("POST", key, {{"uploadId", upload_id}}, complete,
                    {{"content-type", "application/xml"}});
    if (!r.ok) abort(key, upload_id);
    return r;
  }

  void abort(const std::string& key, const std::string& upload_id) {
    // Best effort: an upload left behind costs storage, not correctness (the key is rewritten).
    S3Result a = once("DELETE", key, {{"uploadId", upload_id}}, "", {});
    if (!a.ok) log::warn("s3: cannot abort multipart upload of " + key + ": " + a.describe());
  }
};

S3Client::S3Client(S3Options options, sigv4::Credentials credentials, Sleep sleep, Clock now)
    : impl_(std::make_unique<Impl>()) {
  impl_->opt = std::move(options);
  impl_->creds = std::move(credentials);
  impl_->url = parseEndpoint(impl_->opt.endpoint);
  Impl* impl = impl_.get();
  impl_->sleep = sleep ? std::move(sleep) : [impl](std::chrono::milliseconds d) {
    std::unique_lock lock(impl->sleep_mu);
    impl->sleep_cv.wait_for(lock, d, [impl] { return impl->cancelled.load(); });
  };
  impl_->now = now ? std::move(now) : [] { return std::chrono::system_clock::now(); };
  if (impl_->url.tls) {
    impl_->tls.emplace(asio::ssl::context::tls_client);
    impl_->tls->set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                            asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    impl_->tls->set_verify_mode(asio::ssl::verify_peer);
    if (!impl_->opt.ca_file.empty()) {
      error_code ec;
      impl_->tls->load_verify_file(impl_->opt.ca_file.string(), ec);
      if (ec)
        throw ConfigError("shipping.ca_file",
                          "cannot load " + impl_->opt.ca_file.string() + ": " + ec.message());
    } else {
      impl_->tls->set_default_verify_paths();
    }
  }
}

S3Client::~S3Client() = default;

S3Result S3Client::putObject(const std::string& key, const std::string& body,
                             const std::string& content_type) {
  return impl_->put(key, body, content_type);
}

S3Result S3Client::putFile(const std::string& key, const fs::path& file,
                           const std::string& content_type) {
  std::ifstream in(file, std::ios::binary);
  std::error_code fec;
  auto size = fs::file_size(file, fec);
  if (!in || fec) {
    S3Result r;
    r.code = "LocalRead";
    r.message = "cannot read " + file.string();
    return r;
  }
  if (size > impl_->opt.multipart_threshold) return impl_->multipart(key, in, size, content_type);
  std::string body(size, '\0');
  in.read(body.data(), static_cast<std::streamsize>(size));
  return impl_->put(key, body, content_type);
}

S3Result S3Client::getObject(const std::string& key) {
  return impl_->withRetries("GET", key, {}, "", {});
}

S3Result S3Client::headObject(const std::string& key) {
  return impl_->withRetries("HEAD", key, {}, "", {});
}

S3Result S3Client::createBucket() { return impl_->withRetries("PUT", "", {}, "", {}); }

S3Stats S3Client::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

const S3Options& S3Client::options() const { return impl_->opt; }

void S3Client::cancel() {
  impl_->cancelled = true;
  impl_->sleep_cv.notify_all();
}

S3Options s3Options(const ShippingConfig& s) {
  S3Options o;
  o.endpoint = s.endpoint;
  o.bucket = s.bucket;
  o.region = s.region;
  o.virtual_hosted = s.addressing == "virtual";
  o.ca_file = s.ca_file;
  o.max_retries = s.max_retries;
  o.multipart_threshold = s.multipart_threshold.bytes;
  o.part_size = s.part_size.bytes;
  return o;
}

sigv4::Credentials loadCredentials(const ShippingConfig& s) {
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v ? v : "");
  };
  sigv4::Credentials c{env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"),
                       env("AWS_SESSION_TOKEN")};
  if (!c.empty()) return c;

  fs::path file = s.credentials_file;
  if (file.empty()) {
    std::string e = env("AWS_SHARED_CREDENTIALS_FILE");
    file = e.empty() ? expandHome("~/.aws/credentials") : fs::path(e);
  }
  std::string profile = s.profile;
  if (profile == "default" && !env("AWS_PROFILE").empty()) profile = env("AWS_PROFILE");
  std::ifstream in(file);
  if (!in) {
    throw ConfigError(
        "shipping.credentials_file",
        "no S3 credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set and " +
            file.string() + " cannot be read");
  }
  sigv4::Credentials f;
  std::string line, section;
  auto trim = [](std::string v) {
    auto b = v.find_first_not_of(" \t\r");
    auto e = v.find_last_not_of(" \t\r");
    return b == std::string::npos ? std::string() : v.substr(b, e - b + 1);
  };
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = trim(line.substr(1, line.size() - 2));
      if (section.rfind("profile ", 0) == 0) section = trim(section.substr(8));
      continue;
    }
    if (section != profile) continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string k = trim(line.substr(0, eq)), v = trim(line.substr(eq + 1));
    if (k == "aws_access_key_id") f.access_key_id = v;
    if (k == "aws_secret_access_key") f.secret_access_key = v;
    if (k == "aws_session_token") f.session_token = v;
  }
  if (f.empty()) {
    throw ConfigError("shipping.profile", "profile \"" + profile + "\" in " + file.string() +
                                              " has no aws_access_key_id/aws_secret_access_key");
  }
  return f;
}

}  // namespace kscribe
