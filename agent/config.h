#pragma once
// The kscribe configuration: typed structs, loaded from YAML. Every key is known; an unknown key,
// a wrong type or a bad value is a ConfigError that names the key path.

#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "agent/units.h"

namespace kscribe {

/// A configuration problem. what() reads "sessions.api.idle_timeout: \"5x\" is not a duration".
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string key, std::string problem, const std::string& file = "")
      : std::runtime_error((file.empty() ? "" : file + ": ") + (key.empty() ? "" : key + ": ") +
                           problem),
        key_(std::move(key)),
        problem_(std::move(problem)) {}
  const std::string& key() const { return key_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string key_;
  std::string problem_;
};

struct ListenConfig {
  std::string address = "127.0.0.1";
  std::uint16_t port = 7443;
};

struct TlsConfig {
  std::filesystem::path ca_cert;  // also verifies agent client certificates
  std::filesystem::path ca_key;   // used by `kscribe agent add`; not needed by `serve`
  std::filesystem::path cert;
  std::filesystem::path key;
};

struct UpstreamConfig {
  bool in_cluster = false;
  std::filesystem::path kubeconfig;  // default ~/.kube/config (or $KUBECONFIG)
  std::string context;               // empty: the kubeconfig's current-context
  bool impersonate = false;
  Duration connect_timeout{5'000};
  Duration response_timeout{60'000};  // until response headers; watches are exempt once streaming
  std::uint32_t max_idle_connections = 32;
};

/// Which workloads may use an agent's credential. Every kind that is set must match; within a kind
/// any value may match, except pod labels, which all must hold (a label selector). exe, comm and
/// cgroup are fnmatch(3) globs.
struct Selectors {
  std::vector<std::uint32_t> uid;
  std::vector<std::uint32_t> gid;
  std::vector<std::string> exe;
  std::vector<std::string> comm;
  std::vector<std::string> cgroup;
  std::vector<std::string> container_id;
  std::vector<std::string> k8s_namespace;
  std::vector<std::string> k8s_service_account;
  std::vector<std::string> k8s_pod_label;  // "key=value"
  bool empty() const;
};

struct AgentEntry {
  std::string name;
  std::string token_sha256;  // hex digest of the bearer token; the token itself is never stored
  Selectors selectors;
};

struct IdentityConfig {
  std::string trust_domain = "kscribe.local";
  std::string on_mismatch = "reject";  // reject | record
  std::string node_name;  // whose pods to watch for k8s.* selectors; default $NODE_NAME
  std::vector<AgentEntry> agents;
};

struct ApiSessionsConfig {
  bool enabled = true;
  Duration idle_timeout{5 * 60'000};
  Size max_body_size{1'000'000, "1MB"};
  bool redact_secrets = true;
  std::filesystem::path storage;  // default <home>/sessions/
};

struct SessionsConfig {
  ApiSessionsConfig api;
  Duration sync_interval{1'000};  // fsync cadence for open session files and the audit log
  // reject (503; while the writer is behind, requests wait for it) | forward (count, log the loss)
  std::string on_record_failure = "reject";
  Duration record_wait{10'000};  // under reject: longest a request waits for a busy writer; 503
  Size max_decompressed_size{64'000'000, "64MB"};  // cap against gzip bombs
};

struct AuditConfig {
  std::filesystem::path path;  // default <home>/audit/audit.jsonl
};

struct ShippingConfig {
  bool enabled = false;
  std::string endpoint;  // e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:8080
  std::string bucket;
  std::string region = "us-east-1";
  std::string prefix = "kscribe";
  std::string cluster = "default";
  std::string node;                 // default: the host name
  std::string addressing = "path";  // path | virtual
  std::filesystem::path ca_file;    // empty: system trust store
  std::filesystem::path
      credentials_file;  // default: AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials
  std::string profile = "default";
  Size multipart_threshold{16'000'000, "16MB"};
  Size part_size{8'000'000, "8MB"};
  std::filesystem::path spool;  // default <home>/spool/
  Size spool_max_size{1024ULL * 1024 * 1024, "1GiB"};
  std::string on_spool_full = "reject";  // reject (503 new requests) | drop_oldest
  Duration upload_interval{10'000};
  Duration audit_head_interval{60'000};
  Duration final_upload_timeout{10'000};  // at shutdown: how long the last upload pass may take
  std::uint32_t max_retries = 8;
};

struct MetricsConfig {
  bool enabled = true;
  std::string address = "127.0.0.1";
  std::uint16_t port = 9464;
};

struct LimitsConfig {
  std::uint32_t max_connections = 4096;
  Size max_header_size{64 * 1024, "64KiB"};   // whole header block; larger: 431
  Size max_request_line{16 * 1024, "16KiB"};  // method + target + version; longer: 414
  Duration header_timeout{10'000};            // request headers complete within this; else 408
  Duration idle_timeout{120'000};             // keep-alive connection with no request
  Duration shutdown_grace{10'000};            // in-flight requests may finish within this
};

struct LogConfig {
  std::string level = "info";  // debug | info | warn | error
};

struct Config {
  std::filesystem::path home;  // where defaults live; not a YAML key
  ListenConfig listen;
  TlsConfig tls;
  UpstreamConfig upstream;
  IdentityConfig identity;
  std::string attribution = "required";  // required | optional | off
  SessionsConfig sessions;
  AuditConfig audit;
  ShippingConfig shipping;
  MetricsConfig metrics;
  LimitsConfig limits;
  LogConfig log;
};

/// The kscribe home: `explicit_home` if set, else $KSCRIBE_HOME, else ~/.kscribe.
std::filesystem::path resolveHome(const std::filesystem::path& explicit_home = {});
/// Expands a leading "~" or "~/" with $HOME.
std::filesystem::path expandHome(const std::string& path);

/// The defaults, with every path under `home`.
Config defaultConfig(const std::filesystem::path& home);
/// Parses YAML text over the defaults. Throws ConfigError.
Config parseConfig(const std::string& yaml, const std::filesystem::path& home);
/// Reads and parses a file. Throws ConfigError (a missing or unreadable file included).
Config loadConfig(const std::filesystem::path& file, const std::filesystem::path& home);

/// The whole effective config as JSON, durations and sizes as text (validates against
/// schemas/config.schema.json).
nlohmann::ordered_json toJson(const Config& config);
/// The same as YAML, as `kscribe init` writes it.
std::string toYaml(const Config& config);

}  // namespace kscribe
