#include "agent/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

namespace kscribe {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

const fs::path kHome = "/var/lib/kscribe-test";

// The message of the ConfigError `yaml` raises, or "" if it parses.
std::string errorOf(const std::string& yaml) {
  try {
    parseConfig(yaml, kHome);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsAreExactlyTheDesignedOnes) {
  const Config c = parseConfig("", kHome);
  EXPECT_TRUE(c.sessions.api.enabled);
  EXPECT_EQ(c.sessions.api.idle_timeout, milliseconds(5 * 60'000));
  EXPECT_EQ(c.sessions.api.max_body_size.bytes, 1'000'000u);
  EXPECT_EQ(c.sessions.api.max_body_size.text, "1MB");
  EXPECT_TRUE(c.sessions.api.redact_secrets);
  EXPECT_EQ(c.sessions.api.storage, kHome / "sessions/");
  EXPECT_EQ(c.audit.path, kHome / "audit/audit.jsonl");
  EXPECT_EQ(c.tls.ca_cert, kHome / "ca.crt");
  EXPECT_EQ(c.tls.cert, kHome / "server.crt");
  EXPECT_EQ(c.tls.key, kHome / "server.key");
  EXPECT_EQ(c.listen.address, "127.0.0.1");
  EXPECT_EQ(c.listen.port, 7443);
  EXPECT_EQ(c.attribution, "required");
  EXPECT_EQ(c.identity.on_mismatch, "reject");
  EXPECT_EQ(c.identity.trust_domain, "kscribe.local");
  EXPECT_TRUE(c.identity.agents.empty());
  EXPECT_EQ(c.sessions.on_record_failure, "reject");
  EXPECT_EQ(c.sessions.sync_interval, milliseconds(1000));
  EXPECT_EQ(c.sessions.record_wait, milliseconds(10'000));
  EXPECT_FALSE(c.shipping.enabled);
  EXPECT_EQ(c.shipping.spool, kHome / "spool/");
  EXPECT_EQ(c.shipping.on_spool_full, "reject");
  EXPECT_TRUE(c.metrics.enabled);
  EXPECT_EQ(c.limits.max_header_size.bytes, 64u * 1024);
  EXPECT_EQ(c.limits.header_timeout, milliseconds(10'000));
}

TEST(Config, TheSeedBlockParsesToTheDefaults) {
  const Config c = parseConfig(R"(
sessions:
  api:
    enabled: true
    idle_timeout: 5m
    max_body_size: 1MB
    redact_secrets: true
    storage: /var/lib/kscribe-test/sessions/
)",
                               kHome);
  EXPECT_EQ(toJson(c), toJson(defaultConfig(kHome)));
}

TEST(Config, ReadsEveryUnit) {
  const Config c = parseConfig(R"(
sessions:
  api:
    idle_timeout: 500ms
    max_body_size: 512KB
  sync_interval: 30s
  record_wait: 250ms
limits:
  idle_timeout: 1h
  max_header_size: 1GiB
)",
                               kHome);
  EXPECT_EQ(c.sessions.api.idle_timeout, milliseconds(500));
  EXPECT_EQ(c.sessions.api.max_body_size.bytes, 512'000u);
  EXPECT_EQ(c.sessions.api.max_body_size.text, "512KB");
  EXPECT_EQ(c.sessions.sync_interval, milliseconds(30'000));
  EXPECT_EQ(c.sessions.record_wait, milliseconds(250));
  EXPECT_EQ(c.limits.idle_timeout, milliseconds(3'600'000));
  EXPECT_EQ(c.limits.max_header_size.bytes, 1024ull * 1024 * 1024);
}

TEST(Config, ExpandsTilde) {
  ASSERT_EQ(::setenv("HOME", "/home/tester", 1), 0);
  const Config c = parseConfig("sessions:\n  api:\n    storage: ~/.kscribe/sessions/\n", kHome);
  EXPECT_EQ(c.sessions.api.storage, fs::path("/home/tester/.kscribe/sessions/"));
  EXPECT_EQ(expandHome("~"), fs::path("/home/tester"));
  EXPECT_EQ(expandHome("/abs/~x"), fs::path("/abs/~x"));
}

TEST(Config, HomeComesFromFlagThenEnvironmentThenTilde) {
  ASSERT_EQ(::setenv("HOME", "/home/tester", 1), 0);
  ASSERT_EQ(::setenv("KSCRIBE_HOME", "/srv/ks", 1), 0);
  EXPECT_EQ(resolveHome("/flag"), fs::path("/flag"));
  EXPECT_EQ(resolveHome(), fs::path("/srv/ks"));
  ASSERT_EQ(::unsetenv("KSCRIBE_HOME"), 0);
  EXPECT_EQ(resolveHome(), fs::path("/home/tester/.kscribe"));
  EXPECT_EQ(defaultConfig(resolveHome()).sessions.api.storage,
            fs::path("/home/tester/.kscribe/sessions/"));
}

TEST(Config, ReadsAgentsAndSelectors) {
  const Config c = parseConfig(R"(
identity:
  trust_domain: prod.example
  on_mismatch: record
  agents:
    - name: planner
      token_sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
      selectors:
        uid: 1000
        exe: ["/usr/bin/kubectl*", "/opt/agent/*"]
        k8s:
          namespace: agents
          pod_label: [app=planner]
    - name: unbound
)",
                               kHome);
  ASSERT_EQ(c.identity.agents.size(), 2u);
  EXPECT_EQ(c.identity.trust_domain, "prod.example");
  EXPECT_EQ(c.identity.on_mismatch, "record");
  const auto& a = c.identity.agents[0];
  EXPECT_EQ(a.name, "planner");
  EXPECT_EQ(a.selectors.uid, std::vector<std::uint32_t>{1000});
  EXPECT_EQ(a.selectors.exe.size(), 2u);
  EXPECT_EQ(a.selectors.k8s_namespace, std::vector<std::string>{"agents"});
  EXPECT_EQ(a.selectors.k8s_pod_label, std::vector<std::string>{"app=planner"});
  EXPECT_FALSE(a.selectors.empty());
  EXPECT_TRUE(c.identity.agents[1].selectors.empty());
}

struct ErrorCase {
  const char* yaml;
  const char* message;
  friend void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.yaml; }
};

class ConfigErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ConfigErrors, NameTheKeyAndTheProblem) {
  EXPECT_EQ(errorOf(GetParam().yaml), GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    EveryErrorPath, ConfigErrors,
    ::testing::Values(
        ErrorCase{"sessions:\n  api:\n    idle_timeout: 5x\n",
                  "sessions.api.idle_timeout: \"5x\" is not a duration (like 500ms, 30s, 5m, 1h)"},
        ErrorCase{"sessions:\n  record_wait: soon\n",
                  "sessions.record_wait: \"soon\" is not a duration (like 500ms, 30s, 5m, 1h)"},
        ErrorCase{"sessions:\n  api:\n    idle_timeout: 0s\n",
                  "sessions.api.idle_timeout: must be longer than 0"},
        ErrorCase{"sessions:\n  api:\n    max_body_size: 1XB\n",
                  "sessions.api.max_body_size: \"1XB\" is not a size (like 512KB, 1MB, 1GiB)"},
        ErrorCase{"sessions:\n  api:\n    max_body_size: 0\n",
                  "sessions.api.max_body_size: must be larger than 0"},
        ErrorCase{"sessions:\n  api:\n    idle_timeot: 5m\n",
                  "sessions.api.idle_timeot: unknown key"},
        ErrorCase{"nonsense: 1\n", "nonsense: unknown key"},
        ErrorCase{"sessions:\n  api:\n    enabled: yes please\n",
                  "sessions.api.enabled: \"yes please\" is not true or false"},
        ErrorCase{"sessions:\n  api: 5\n", "sessions.api: must be a mapping, not \"5\""},
        ErrorCase{"sessions:\n  api:\n    storage: [a, b]\n",
                  "sessions.api.storage: must be a path, not a list"},
        ErrorCase{"listen:\n  port: 70000\n", "listen.port: 70000 is out of range (0..65535)"},
        ErrorCase{"listen:\n  port: -1\n", "listen.port: \"-1\" is not a whole number"},
        ErrorCase{"listen:\n  port: http\n", "listen.port: \"http\" is not a whole number"},
        ErrorCase{"attribution: maybe\n",
                  "attribution: \"maybe\" is not one of: required, optional, off"},
        ErrorCase{"identity:\n  on_mismatch: ignore\n",
                  "identity.on_mismatch: \"ignore\" is not one of: reject, record"},
        ErrorCase{"identity:\n  trust_domain: a/b\n",
                  "identity.trust_domain: \"a/b\" is not a trust domain name"},
        ErrorCase{"identity:\n  agents: {}\n", "identity.agents: must be a list of agents"},
        ErrorCase{"identity:\n  agents:\n    - selectors: {}\n",
                  "identity.agents[0].name: is required"},
        ErrorCase{"identity:\n  agents:\n    - name: a\n    - name: a\n",
                  "identity.agents[1].name: \"a\" is listed twice"},
        ErrorCase{
            "identity:\n  agents:\n    - name: a b\n",
            "identity.agents[0].name: \"a b\" may hold only letters, digits, '-', '_' and '.'"},
        ErrorCase{"identity:\n  agents:\n    - name: a\n      token_sha256: abc\n",
                  "identity.agents[0].token_sha256: must be 64 lowercase hex digits (a SHA-256)"},
        ErrorCase{"identity:\n  agents:\n    - name: a\n      selectors:\n        uid: root\n",
                  "identity.agents[0].selectors.uid: \"root\" is not a whole number"},
        ErrorCase{"identity:\n  agents:\n    - name: a\n      selectors:\n        k8s:\n          "
                  "pod_label: app\n",
                  "identity.agents[0].selectors.k8s.pod_label: \"app\" is not key=value"},
        ErrorCase{"identity:\n  agents:\n    - name: a\n      selectors:\n        pid: 1\n",
                  "identity.agents[0].selectors.pid: unknown key"},
        ErrorCase{"shipping:\n  enabled: true\n",
                  "shipping.endpoint: is required when shipping is enabled"},
        ErrorCase{"shipping:\n  enabled: true\n  endpoint: s3.local\n  bucket: b\n",
                  "shipping.endpoint: \"s3.local\" must start with http:// or https://"},
        ErrorCase{"shipping:\n  enabled: true\n  endpoint: http://127.0.0.1:1\n",
                  "shipping.bucket: is required when shipping is enabled"},
        ErrorCase{
            "shipping:\n  part_size: 1MB\n",
            "shipping.part_size: \"1MB\" is below S3's minimum part size of 5MiB (5242880 bytes)"},
        ErrorCase{"shipping:\n  on_spool_full: ignore\n",
                  "shipping.on_spool_full: \"ignore\" is not one of: reject, drop_oldest"},
        ErrorCase{"sessions:\n  on_record_failure: drop\n",
                  "sessions.on_record_failure: \"drop\" is not one of: reject, forward"},
        ErrorCase{"limits:\n  max_connections: 0\n",
                  "limits.max_connections: 0 is out of range (1..1000000)"},
        ErrorCase{"log:\n  level: loud\n",
                  "log.level: \"loud\" is not one of: debug, info, warn, error"},
        ErrorCase{"- a\n- b\n", "must be a mapping, not a list"},
        ErrorCase{"sessions: [\n",
                  "not valid YAML: line 2, column 1: end of sequence flow not found"}));

TEST(Config, LoadNamesTheFileAndTheKey) {
  const fs::path file =
      fs::temp_directory_path() / ("kscribe-config-test-" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(file) << "sessions:\n  api:\n    idle_timeout: 5x\n";
  try {
    loadConfig(file, kHome);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "sessions.api.idle_timeout");
    EXPECT_EQ(
        std::string(e.what()),
        file.string() +
            ": sessions.api.idle_timeout: \"5x\" is not a duration (like 500ms, 30s, 5m, 1h)");
  }
  fs::remove(file);
  try {
    loadConfig(file, kHome);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), file.string() + ": cannot read config file: no such file");
  }
}

TEST(Config, YamlRoundTripsThroughTheLoader) {
  Config c = parseConfig(
      "identity:\n  agents:\n    - name: a\n      selectors:\n        comm: kubectl\n", kHome);
  const Config again = parseConfig(toYaml(c), kHome);
  EXPECT_EQ(toJson(again), toJson(c));
}

}  // namespace
}  // namespace kscribe
