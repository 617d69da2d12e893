#include "agent/upstream.h"

#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "proxy/log.h"

namespace kscribe {
namespace fs = std::filesystem;

namespace {
constexpr const char* kKubeconfigKey = "upstream.kubeconfig";

std::string readFileOr(const fs::path& p, const std::string& key, const std::string& what) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw ConfigError(key, "cannot read " + what + " " + p.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string base64Decode(const std::string& in, const std::string& key) {
  std::string clean;
  for (char c : in)
    if (c != '\n' && c != '\r' && c != ' ') clean += c;
  if (clean.size() % 4 != 0) throw ConfigError(key, "invalid base64");
  std::string out(clean.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(clean.data()),
                                static_cast<int>(clean.size()));
  if (n < 0) throw ConfigError(key, "invalid base64");
  std::size_t len = static_cast<std::size_t>(n);
  if (!clean.empty() && clean.back() == '=') --len;
  if (clean.size() > 1 && clean[clean.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

YAML::Node findNamed(const YAML::Node& list, const std::string& name, const std::string& what) {
  if (list && list.IsSequence()) {
    for (const auto& item : list) {
      if (item["name"] && item["name"].as<std::string>() == name) return item[what];
    }
  }
  return YAML::Node();
}

std::string str(const YAML::Node& n, const char* key) {
  if (!n || !n[key]) return {};
  return n[key].as<std::string>();
}

fs::path resolvePath(const fs::path& dir, const std::string& p) {
  fs::path path(p);
  return path.is_absolute() ? path : dir / path;
}

// "https://host:port/", "https://[::1]:6443"
void parseServer(const std::string& url, proxy::UpstreamOptions& out) {
  const std::string key = kKubeconfigKey;
  const std::string scheme = "https://";
  if (url.rfind(scheme, 0) != 0)
    throw ConfigError(key, "cluster server must be an https:// URL, got \"" + url + "\"");
  std::string rest = url.substr(scheme.size());
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    if (rest.substr(slash) != "/")
      throw ConfigError(key, "cluster server with a path prefix is not supported: " + url);
    rest.resize(slash);
  }
  if (!rest.empty() && rest[0] == '[') {
    const auto close = rest.find(']');
    if (close == std::string::npos) throw ConfigError(key, "bad server address " + url);
    out.host = rest.substr(1, close - 1);
    out.port = close + 1 < rest.size() && rest[close + 1] == ':' ? rest.substr(close + 2) : "443";
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    out.host = rest.substr(0, colon);
    out.port = rest.substr(colon + 1);
  } else {
    out.host = rest;
    out.port = "443";
  }
  if (out.host.empty() || out.port.empty()) throw ConfigError(key, "bad server address " + url);
}
}  // namespace

proxy::UpstreamOptions parseKubeconfig(const std::string& yaml, const fs::path& dir,
                                       const std::string& context) {
  const std::string key = kKubeconfigKey;
  proxy::UpstreamOptions out;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw ConfigError(key, std::string("not valid YAML: ") + e.what());
  }
  try {
    const std::string ctx_name = context.empty() ? str(root, "current-context") : context;
    if (ctx_name.empty()) throw ConfigError(key, "no current-context and no upstream.context");
    const YAML::Node ctx = findNamed(root["contexts"], ctx_name, "context");
    if (!ctx || ctx.IsNull())
      throw ConfigError(context.empty() ? key : "upstream.context",
                        "context \"" + ctx_name + "\" not found in the kubeconfig");
    const std::string cluster_name = str(ctx, "cluster");
    const std::string user_name = str(ctx, "user");
    const YAML::Node cluster = findNamed(root["clusters"], cluster_name, "cluster");
    if (!cluster || cluster.IsNull())
      throw ConfigError(key, "cluster \"" + cluster_name + "\" not found");
    parseServer(str(cluster, "server"), out);
    out.tls_server_name = str(cluster, "tls-server-name");
    if (auto v = str(cluster, "certificate-authority-data"); !v.empty()) {
      out.ca_pem = base64Decode(v, key);
    } else if (auto f = str(cluster, "certificate-authority"); !f.empty()) {
      out.ca_pem = readFileOr(resolvePath(dir, f), key, "certificate-authority");
    }
    if (cluster["insecure-skip-tls-verify"])
      out.insecure_skip_tls_verify = cluster["insecure-skip-tls-verify"].as<bool>();

    const YAML::Node user = findNamed(root["users"], user_name, "user");
    if (user_name.empty() || !user || user.IsNull()) return out;  // anonymous
    if (user["exec"] || user["auth-provider"])
      throw ConfigError(key, "user \"" + user_name +
                                 "\": exec and auth-provider credentials are not supported; use a "
                                 "client certificate or token");
    if (auto v = str(user, "client-certificate-data"); !v.empty()) {
      out.client_cert_pem = base64Decode(v, key);
    } else if (auto f = str(user, "client-certificate"); !f.empty()) {
      out.client_cert_pem = readFileOr(resolvePath(dir, f), key, "client-certificate");
    }
    if (auto v = str(user, "client-key-data"); !v.empty()) {
      out.client_key_pem = base64Decode(v, key);
    } else if (auto f = str(user, "client-key"); !f.empty()) {
      out.client_key_pem = readFileOr(resolvePath(dir, f), key, "client-key");
    }
    if (out.client_cert_pem.empty() != out.client_key_pem.empty())
      throw ConfigError(key, "user \"" + user_name + "\": client certificate without key");
    out.token = str(user, "token");
    if (auto f = str(user, "tokenFile"); !f.empty() && out.token.empty())
      out.token_file = resolvePath(dir, f);
  } catch (const YAML::Exception& e) {
    throw ConfigError(key, std::string("malformed kubeconfig: ") + e.what());
  }
  return out;
}

proxy::UpstreamOptions inClusterUpstream(const fs::path& sa_dir) {
  const std::string key = "upstream.in_cluster";
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host) throw ConfigError(key, "KUBERNETES_SERVICE_HOST is not set (not in a pod?)");
  proxy::UpstreamOptions out;
  out.host = host;
  out.port = port && *port ? port : "443";
  out.ca_pem = readFileOr(sa_dir / "ca.crt", key, "service account CA");
  out.token_file = sa_dir / "token";
  readFileOr(out.token_file, key, "service account token");
  out.token_refresh = std::chrono::milliseconds(60'000);
  return out;
}

proxy::UpstreamOptions loadUpstream(const UpstreamConfig& config) {
  proxy::UpstreamOptions out;
  if (config.in_cluster) {
    out = inClusterUpstream();
  } else {
    const std::string yaml = readFileOr(config.kubeconfig, kKubeconfigKey, "kubeconfig");
    out = parseKubeconfig(yaml, config.kubeconfig.parent_path(), config.context);
  }
  out.connect_timeout = config.connect_timeout;
  out.response_timeout = config.response_timeout;
  out.max_idle_connections = config.max_idle_connections;
  out.impersonate = config.impersonate;
  return out;
}

proxy::ServerOptions serverOptions(const Config& config) {
  proxy::ServerOptions o;
  o.listen_address = config.listen.address;
  o.listen_port = config.listen.port;
  o.cert_file = config.tls.cert;
  o.key_file = config.tls.key;
  o.ca_file = config.tls.ca_cert;
  o.trust_domain = config.identity.trust_domain;
  for (const auto& a : config.identity.agents) o.agents.push_back({a.name, a.token_sha256});
  o.upstream = loadUpstream(config.upstream);
  o.limits.max_connections = config.limits.max_connections;
  o.limits.max_header_size = static_cast<std::uint32_t>(config.limits.max_header_size.bytes);
  o.limits.max_request_line = static_cast<std::uint32_t>(config.limits.max_request_line.bytes);
  o.limits.header_timeout = config.limits.header_timeout;
  o.limits.idle_timeout = config.limits.idle_timeout;
  o.limits.shutdown_grace = config.limits.shutdown_grace;
  o.limits.record_wait = config.sessions.record_wait;
  return o;
}

}  // namespace kscribe
