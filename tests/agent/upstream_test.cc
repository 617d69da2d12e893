// Kubeconfig and in-cluster parsing into the proxy's upstream options.
#include "agent/upstream.h"

#include <gtest/gtest.h>

#include <fstream>

namespace kscribe {
namespace {

TEST(Kubeconfig, PicksContextClusterAndUser) {
  const std::string yaml = R"(
apiVersion: v1
kind: Config
current-context: one
contexts:
- name: one
  context: {cluster: c1, user: u1}
- name: two
  context: {cluster: c2, user: u2}
clusters:
- name: c1
  cluster: {server: "https://api.example.test:6443", certificate-authority-data: "aGVsbG8="}
- name: c2
  cluster: {server: "https://[::1]:8443/", insecure-skip-tls-verify: true, tls-server-name: kube}
users:
- name: u1
  user: {token: fake-token}
- name: u2
  user: {tokenFile: tok}
)";
  auto one = parseKubeconfig(yaml, "/dir", "");
  EXPECT_EQ(one.host, "api.example.test");
  EXPECT_EQ(one.port, "6443");
  EXPECT_EQ(one.ca_pem, "hello");
  EXPECT_EQ(one.token, "fake-token");
  auto two = parseKubeconfig(yaml, "/dir", "two");
  EXPECT_EQ(two.host, "::1");
  EXPECT_EQ(two.port, "8443");
  EXPECT_TRUE(two.insecure_skip_tls_verify);
  EXPECT_EQ(two.tls_server_name, "kube");
  EXPECT_EQ(two.token_file, "/dir/tok");
}

TEST(Kubeconfig, ErrorsNameTheKey) {
  try {
    parseKubeconfig("current-context: x\ncontexts: []\n", "/", "missing");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "upstream.context");
  }
  try {
    parseKubeconfig(R"(
current-context: a
contexts: [{name: a, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "http://plain:80"}}]
)",
                    "/", "");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "upstream.kubeconfig");
  }
  try {
    parseKubeconfig(R"(
current-context: a
contexts: [{name: a, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://h:1"}}]
users: [{name: u, user: {exec: {command: aws}}}]
)",
                    "/", "");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("exec"), std::string::npos);
  }
}

TEST(InCluster, ReadsServiceAccount) {
  char tmpl[] = "/tmp/kscribe-sa-XXXXXX";
  std::filesystem::path dir = ::mkdtemp(tmpl);
  std::ofstream(dir / "token") << "fake-sa-token\n";
  std::ofstream(dir / "ca.crt") << "PEM";
  ::setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto u = inClusterUpstream(dir);
  EXPECT_EQ(u.host, "10.0.0.1");
  EXPECT_EQ(u.ca_pem, "PEM");
  EXPECT_EQ(u.token_file, dir / "token");
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_THROW(inClusterUpstream(dir), ConfigError);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kscribe
