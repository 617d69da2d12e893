#include "agent/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace kscribe {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

std::string quoted(const YAML::Node& node) {
  if (node.IsScalar()) return "\"" + node.Scalar() + "\"";
  return node.IsSequence() ? "a list" : "a mapping";
}

// Walks one YAML mapping, marking the keys it reads; finish() refuses the rest by name.
class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string path) : node_(node), path_(std::move(path)) {
    if (node_ && !node_.IsNull() && !node_.IsMap()) {
      throw ConfigError(path_, "must be a mapping, not " + quoted(node_));
    }
  }

  std::string keyPath(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }

  // The value at `key`, or an undefined node when absent or null (null means "default").
  YAML::Node get(const std::string& key) {
    seen_.insert(key);
    if (!node_ || !node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node v = node_[key];
    if (!v || v.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
    return v;
  }

  std::string scalar(const std::string& key, const YAML::Node& v, const char* what) {
    if (!v.IsScalar())
      throw ConfigError(keyPath(key), "must be " + std::string(what) + ", not " + quoted(v));
    return v.Scalar();
  }

  void str(const std::string& key, std::string& out) {
    if (auto v = get(key)) out = scalar(key, v, "a string");
  }

  void choice(const std::string& key, std::string& out,
              std::initializer_list<const char*> allowed) {
    auto v = get(key);
    if (!v) return;
    std::string s = scalar(key, v, "a string");
    std::string list;
    for (const char* a : allowed) {
      if (s == a) {
        out = s;
        return;
      }
      list += list.empty() ? a : std::string(", ") + a;
    }
    throw ConfigError(keyPath(key), "\"" + s + "\" is not one of: " + list);
  }

  void boolean(const std::string& key, bool& out) {
    auto v = get(key);
    if (!v) return;
    std::string s = scalar(key, v, "true or false");
    if (s == "true") {
      out = true;
    } else if (s == "false") {
      out = false;
    } else {
      throw ConfigError(keyPath(key), "\"" + s + "\" is not true or false");
    }
  }

  template <typename T>
  void integer(const std::string& key, T& out, std::uint64_t min = 0,
               std::uint64_t max = std::numeric_limits<T>::max()) {
    auto v = get(key);
    if (v) out = toInteger<T>(key, v, min, max);
  }

  template <typename T>
  T toInteger(const std::string& key, const YAML::Node& v, std::uint64_t min, std::uint64_t max) {
    std::string s = scalar(key, v, "an integer");
    std::uint64_t n = 0;
    std::size_t used = 0;
    try {
      if (s.empty() || s[0] == '-' || s[0] == '+') throw std::invalid_argument(s);
      n = std::stoull(s, &used, 10);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != s.size()) {
      throw ConfigError(keyPath(key), "\"" + s + "\" is not a whole number");
    }
    if (n < min || n > max) {
      throw ConfigError(keyPath(key), std::to_string(n) + " is out of range (" +
                                          std::to_string(min) + ".." + std::to_string(max) + ")");
    }
    return static_cast<T>(n);
  }

  void duration(const std::string& key, Duration& out) {
    auto v = get(key);
    if (!v) return;
    std::string s = scalar(key, v, "a duration");
    auto d = parseDuration(s);
    if (!d)
      throw ConfigError(keyPath(key), "\"" + s + "\" is not a duration (like 500ms, 30s, 5m, 1h)");
    if (d->count() == 0) throw ConfigError(keyPath(key), "must be longer than 0");
    out = *d;
  }

  void size(const std::string& key, Size& out) {
    auto v = get(key);
    if (!v) return;
    std::string s = scalar(key, v, "a size");
    auto sz = parseSize(s);
    if (!sz) throw ConfigError(keyPath(key), "\"" + s + "\" is not a size (like 512KB, 1MB, 1GiB)");
    if (sz->bytes == 0) throw ConfigError(keyPath(key), "must be larger than 0");
    out = *sz;
  }

  void path(const std::string& key, fs::path& out) {
    auto v = get(key);
    if (!v) return;
    std::string s = scalar(key, v, "a path");
    if (s.empty()) throw ConfigError(keyPath(key), "must not be empty");
    out = expandHome(s);
  }

  void strings(const std::string& key, std::vector<std::string>& out) {
    auto v = get(key);
    if (!v) return;
    out.clear();
    for (const auto& item : sequence(key, v)) out.push_back(scalar(key, item, "a string"));
  }

  void integers(const std::string& key, std::vector<std::uint32_t>& out) {
    auto v = get(key);
    if (!v) return;
    out.clear();
    for (const auto& item : sequence(key, v)) {
      out.push_back(
          toInteger<std::uint32_t>(key, item, 0, std::numeric_limits<std::uint32_t>::max()));
    }
  }

  // A scalar is taken as a list of one, so `uid: 1000` and `uid: [1000, 1001]` both work.
  std::vector<YAML::Node> sequence(const std::string& key, const YAML::Node& v) {
    std::vector<YAML::Node> items;
    if (v.IsScalar()) {
      items.push_back(v);
    } else if (v.IsSequence()) {
      for (const auto& item : v) items.push_back(item);
    } else {
      throw ConfigError(keyPath(key), "must be a value or a list of values");
    }
    return items;
  }

  MapReader section(const std::string& key) { return MapReader(get(key), keyPath(key)); }

  void finish() const {
    if (!node_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      const std::string k = kv.first.Scalar();
      if (!seen_.contains(k)) throw ConfigError(keyPath(k), "unknown key");
    }
  }

 private:
  YAML::Node node_;
  std::string path_;
  std::set<std::string> seen_;
};

void readSelectors(MapReader& r, Selectors& s) {
  r.integers("uid", s.uid);
  r.integers("gid", s.gid);
  r.strings("exe", s.exe);
  r.strings("comm", s.comm);
  r.strings("cgroup", s.cgroup);
  r.strings("container_id", s.container_id);
  MapReader k8s = r.section("k8s");
  k8s.strings("namespace", s.k8s_namespace);
  k8s.strings("service_account", s.k8s_service_account);
  k8s.strings("pod_label", s.k8s_pod_label);
  for (const auto& label : s.k8s_pod_label) {
    if (label.find('=') == std::string::npos || label.front() == '=') {
      throw ConfigError(k8s.keyPath("pod_label"), "\"" + label + "\" is not key=value");
    }
  }
  k8s.finish();
  r.finish();
}

void readAgents(MapReader& identity, IdentityConfig& out) {
  YAML::Node list = identity.get("agents");
  if (!list) return;
  const std::string base = identity.keyPath("agents");
  if (!list.IsSequence()) throw ConfigError(base, "must be a list of agents");
  std::set<std::string> names;
  for (std::size_t i = 0; i < list.size(); ++i) {
    MapReader a(list[i], base + "[" + std::to_string(i) + "]");
    AgentEntry e;
    a.str("name", e.name);
    if (e.name.empty()) throw ConfigError(a.keyPath("name"), "is required");
    for (char c : e.name) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
        throw ConfigError(a.keyPath("name"),
                          "\"" + e.name + "\" may hold only letters, digits, '-', '_' and '.'");
      }
    }
    if (!names.insert(e.name).second)
      throw ConfigError(a.keyPath("name"), "\"" + e.name + "\" is listed twice");
    a.str("token_sha256", e.token_sha256);
    if (!e.token_sha256.empty() &&
        (e.token_sha256.size() != 64 ||
         e.token_sha256.find_first_not_of("0123456789abcdef") != std::string::npos)) {
      throw ConfigError(a.keyPath("token_sha256"), "must be 64 lowercase hex digits (a SHA-256)");
    }
    MapReader sel = a.section("selectors");
    readSelectors(sel, e.selectors);
    a.finish();
    out.agents.push_back(std::move(e));
  }
}

void readConfig(const YAML::Node& root, Config& c) {
  MapReader r(root, "");

  MapReader listen = r.section("listen");
  listen.str("address", c.listen.address);
  listen.integer("port", c.listen.port);
  listen.finish();

  MapReader tls = r.section("tls");
  tls.path("ca_cert", c.tls.ca_cert);
  tls.path("ca_key", c.tls.ca_key);
  tls.path("cert", c.tls.cert);
  tls.path("key", c.tls.key);
  tls.finish();

  MapReader up = r.section("upstream");
  up.boolean("in_cluster", c.upstream.in_cluster);
  up.path("kubeconfig", c.upstream.kubeconfig);
  up.str("context", c.upstream.context);
  up.boolean("impersonate", c.upstream.impersonate);
  up.duration("connect_timeout", c.upstream.connect_timeout);
  up.duration("response_timeout", c.upstream.response_timeout);
  up.integer("max_idle_connections", c.upstream.max_idle_connections, 0, 4096);
  up.finish();

  MapReader id = r.section("identity");
  id.str("trust_domain", c.identity.trust_domain);
  if (c.identity.trust_domain.empty() ||
      c.identity.trust_domain.find_first_of("/: ") != std::string::npos) {
    throw ConfigError(id.keyPath("trust_domain"),
                      "\"" + c.identity.trust_domain + "\" is not a trust domain name");
  }
  id.choice("on_mismatch", c.identity.on_mismatch, {"reject", "record"});
  id.str("node_name", c.identity.node_name);
  readAgents(id, c.identity);
  id.finish();

  r.choice("attribution", c.attribution, {"required", "optional", "off"});

  MapReader sessions = r.section("sessions");
  MapReader api = sessions.section("api");
  api.boolean("enabled", c.sessions.api.enabled);
  api.duration("idle_timeout", c.sessions.api.idle_timeout);
  api.size("max_body_size", c.sessions.api.max_body_size);
  api.boolean("redact_secrets", c.sessions.api.redact_secrets);
  api.path("storage", c.sessions.api.storage);
  api.finish();
  sessions.duration("sync_interval", c.sessions.sync_interval);
  sessions.choice("on_record_failure", c.sessions.on_record_failure, {"reject", "forward"});
  sessions.duration("record_wait", c.sessions.record_wait);
  sessions.size("max_decompressed_size", c.sessions.max_decompressed_size);
  sessions.finish();

  MapReader audit = r.section("audit");
  audit.path("path", c.audit.path);
  audit.finish();

  MapReader ship = r.section("shipping");
  auto& s = c.shipping;
  ship.boolean("enabled", s.enabled);
  ship.str("endpoint", s.endpoint);
  ship.str("bucket", s.bucket);
  ship.str("region", s.region);
  ship.str("prefix", s.prefix);
  ship.str("cluster", s.cluster);
  ship.str("node", s.node);
  ship.choice("addressing", s.addressing, {"path", "virtual"});
  ship.path("ca_file", s.ca_file);
  ship.path("credentials_file", s.credentials_file);
  ship.str("profile", s.profile);
  ship.size("multipart_threshold", s.multipart_threshold);
  ship.size("part_size", s.part_size);
  ship.path("spool", s.spool);
  ship.size("spool_max_size", s.spool_max_size);
  ship.choice("on_spool_full", s.on_spool_full, {"reject", "drop_oldest"});
  ship.duration("upload_interval", s.upload_interval);
  ship.duration("audit_head_interval", s.audit_head_interval);
  ship.duration("final_upload_timeout", s.final_upload_timeout);
  ship.integer("max_retries", s.max_retries, 0, 100);
  if (s.part_size.bytes < 5ULL * 1024 * 1024) {
    // S3 (and Swift's s3api) refuse multipart parts under 5 MiB (except the last).
    throw ConfigError(
        ship.keyPath("part_size"),
        "\"" + s.part_size.text + "\" is below S3's minimum part size of 5MiB (5242880 bytes)");
  }
  if (s.enabled) {
    if (s.endpoint.empty())
      throw ConfigError(ship.keyPath("endpoint"), "is required when shipping is enabled");
    if (s.endpoint.rfind("http://", 0) != 0 && s.endpoint.rfind("https://", 0) != 0) {
      throw ConfigError(ship.keyPath("endpoint"),
                        "\"" + s.endpoint + "\" must start with http:// or https://");
    }
    if (s.bucket.empty())
      throw ConfigError(ship.keyPath("bucket"), "is required when shipping is enabled");
  }
  ship.finish();

  MapReader metrics = r.section("metrics");
  metrics.boolean("enabled", c.metrics.enabled);
  metrics.str("address", c.metrics.address);
  metrics.integer("port", c.metrics.port);
  metrics.finish();

  MapReader limits = r.section("limits");
  limits.integer("max_connections", c.limits.max_connections, 1, 1'000'000);
  limits.size("max_header_size", c.limits.max_header_size);
  limits.size("max_request_line", c.limits.max_request_line);
  limits.duration("header_timeout", c.limits.header_timeout);
  limits.duration("idle_timeout", c.limits.idle_timeout);
  limits.duration("shutdown_grace", c.limits.shutdown_grace);
  limits.finish();

  MapReader log = r.section("log");
  log.choice("level", c.log.level, {"debug", "info", "warn", "error"});
  log.finish();

  r.finish();
}

json selectorsJson(const Selectors& s) {
  json j = json::object();
  auto put = [&j](const char* k, const auto& v) {
    if (!v.empty()) j[k] = v;
  };
  put("uid", s.uid);
  put("gid", s.gid);
  put("exe", s.exe);
  put("comm", s.comm);
  put("cgroup", s.cgroup);
  put("container_id", s.container_id);
  json k8s = json::object();
  if (!s.k8s_namespace.empty()) k8s["namespace"] = s.k8s_namespace;
  if (!s.k8s_service_account.empty()) k8s["service_account"] = s.k8s_service_account;
  if (!s.k8s_pod_label.empty()) k8s["pod_label"] = s.k8s_pod_label;
  if (!k8s.empty()) j["k8s"] = k8s;
  return j;
}

void emitYaml(YAML::Emitter& out, const json& j) {
  if (j.is_object()) {
    out << YAML::BeginMap;
    for (const auto& [k, v] : j.items()) {
      out << YAML::Key << k << YAML::Value;
      emitYaml(out, v);
    }
    out << YAML::EndMap;
  } else if (j.is_array()) {
    if (j.empty()) out << YAML::Flow;
    out << YAML::BeginSeq;
    for (const auto& v : j) emitYaml(out, v);
    out << YAML::EndSeq;
  } else if (j.is_string()) {
    out << j.get<std::string>();
  } else {
    out << j.dump();
  }
}

}  // namespace

bool Selectors::empty() const {
  return uid.empty() && gid.empty() && exe.empty() && comm.empty() && cgroup.empty() &&
         container_id.empty() && k8s_namespace.empty() && k8s_service_account.empty() &&
         k8s_pod_label.empty();
}

fs::path expandHome(const std::string& path) {
  if (path == "~" || path.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    std::string base = home && *home ? home : "/root";
    return fs::path(base + path.substr(1));
  }
  return fs::path(path);
}

fs::path resolveHome(const fs::path& explicit_home) {
  if (!explicit_home.empty()) return expandHome(explicit_home.string());
  if (const char* env = std::getenv("KSCRIBE_HOME"); env && *env) return expandHome(env);
  return expandHome("~/.kscribe");
}

Config defaultConfig(const fs::path& home) {
  Config c;
  c.home = home;
  c.tls.ca_cert = home / "ca.crt";
  c.tls.ca_key = home / "ca.key";
  c.tls.cert = home / "server.crt";
  c.tls.key = home / "server.key";
  const char* kubeconfig = std::getenv("KUBECONFIG");
  c.upstream.kubeconfig =
      kubeconfig && *kubeconfig ? fs::path(kubeconfig) : expandHome("~/.kube/config");
  c.sessions.api.storage = home / "sessions/";
  c.audit.path = home / "audit" / "audit.jsonl";
  c.shipping.spool = home / "spool/";
  return c;
}

Config parseConfig(const std::string& yaml, const fs::path& home) {
  Config c = defaultConfig(home);
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw ConfigError("", "not valid YAML: line " + std::to_string(e.mark.line + 1) + ", column " +
                              std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  readConfig(root, c);
  return c;
}

Config loadConfig(const fs::path& file, const fs::path& home) {
  std::ifstream in(file);
  if (!in) {
    throw ConfigError("",
                      std::string("cannot read config file: ") +
                          (fs::exists(file) ? "permission denied" : "no such file"),
                      file.string());
  }
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return parseConfig(ss.str(), home);
  } catch (const ConfigError& e) {
    throw ConfigError(e.key(), e.problem(), file.string());
  }
}

json toJson(const Config& c) {
  auto sz = [](const Size& s) { return s.text; };
  auto d = [](Duration v) { return formatDuration(v); };
  json agents = json::array();
  for (const auto& a : c.identity.agents) {
    json e{{"name", a.name}, {"selectors", selectorsJson(a.selectors)}};
    if (!a.token_sha256.empty()) e["token_sha256"] = a.token_sha256;
    agents.push_back(e);
  }
  const auto& s = c.shipping;
  json j{
      {"listen", {{"address", c.listen.address}, {"port", c.listen.port}}},
      {"tls",
       {{"ca_cert", c.tls.ca_cert.string()},
        {"ca_key", c.tls.ca_key.string()},
        {"cert", c.tls.cert.string()},
        {"key", c.tls.key.string()}}},
      {"upstream",
       {{"in_cluster", c.upstream.in_cluster},
        {"kubeconfig", c.upstream.kubeconfig.string()},
        {"context", c.upstream.context},
        {"impersonate", c.upstream.impersonate},
        {"connect_timeout", d(c.upstream.connect_timeout)},
        {"response_timeout", d(c.upstream.response_timeout)},
        {"max_idle_connections", c.upstream.max_idle_connections}}},
      {"identity",
       {{"trust_domain", c.identity.trust_domain},
        {"on_mismatch", c.identity.on_mismatch},
        {"node_name", c.identity.node_name},
        {"agents", agents}}},
      {"attribution", c.attribution},
      {"sessions",
       {{"api",
         {{"enabled", c.sessions.api.enabled},
          {"idle_timeout", d(c.sessions.api.idle_timeout)},
          {"max_body_size", sz(c.sessions.api.max_body_size)},
          {"redact_secrets", c.sessions.api.redact_secrets},
          {"storage", c.sessions.api.storage.string()}}},
        {"sync_interval", d(c.sessions.sync_interval)},
        {"on_record_failure", c.sessions.on_record_failure},
        {"record_wait", d(c.sessions.record_wait)},
        {"max_decompressed_size", sz(c.sessions.max_decompressed_size)}}},
      {"audit", {{"path", c.audit.path.string()}}},
      {"shipping",
       {{"enabled", s.enabled},
        {"endpoint", s.endpoint},
        {"bucket", s.bucket},
        {"region", s.region},
        {"prefix", s.prefix},
        {"cluster", s.cluster},
        {"node", s.node},
        {"addressing", s.addressing},
        {"profile", s.profile},
        {"multipart_threshold", sz(s.multipart_threshold)},
        {"part_size", sz(s.part_size)},
        {"spool", s.spool.string()},
        {"spool_max_size", sz(s.spool_max_size)},
        {"on_spool_full", s.on_spool_full},
        {"upload_interval", d(s.upload_interval)},
        {"audit_head_interval", d(s.audit_head_interval)},
        {"final_upload_timeout", d(s.final_upload_timeout)},
        {"max_retries", s.max_retries}}},
      {"metrics",
       {{"enabled", c.metrics.enabled}, {"address", c.metrics.address}, {"port", c.metrics.port}}},
      {"limits",
       {{"max_connections", c.limits.max_connections},
        {"max_header_size", sz(c.limits.max_header_size)},
        {"max_request_line", sz(c.limits.max_request_line)},
        {"header_timeout", d(c.limits.header_timeout)},
        {"idle_timeout", d(c.limits.idle_timeout)},
        {"shutdown_grace", d(c.limits.shutdown_grace)}}},
      {"log", {{"level", c.log.level}}},
  };
  // Unset optional paths are left out rather than written as "".
  if (!s.ca_file.empty()) j["shipping"]["ca_file"] = s.ca_file.string();
  if (!s.credentials_file.empty()) j["shipping"]["credentials_file"] = s.credentials_file.string();
  return j;
}

std::string toYaml(const Config& config) {
  YAML::Emitter out;
  emitYaml(out, toJson(config));
  return std::string(out.c_str()) + "\n";
}

}  // namespace kscribe
