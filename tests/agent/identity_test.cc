#include "agent/identity.h"

#include <gtest/gtest.h>

namespace kscribe {
namespace {

using Status = proxy::Attribution::Status;

proxy::Attribution kubectlInPod() {
  proxy::Attribution a;
  a.status = Status::kAttributed;
  a.tgid = 4242;
  a.uid = 1000;
  a.gid = 1000;
  a.comm = "kubectl";
  a.exe = "/usr/local/bin/kubectl";
  a.cgroup_id = 9876;
  a.cgroup_path =
      "/kubepods.slice/kubepods-burstable.slice/"
      "kubepods-burstable-pod1f2e3d4c_aaaa_bbbb_cccc_0123456789ab.slice/"
      "cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope";
  a.container_runtime = "containerd";
  a.container_id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  a.pod_uid = "1f2e3d4c-aaaa-bbbb-cccc-0123456789ab";
  return a;
}

PodInfo plannerPod() {
  return PodInfo{"1f2e3d4c-aaaa-bbbb-cccc-0123456789ab",
                 "agents",
                 "planner-7d9f",
                 "planner",
                 {{"app", "planner"}, {"tier", "ai"}}};
}

bool match(const Selectors& s, const proxy::Attribution& a, const PodInfo* pod,
           std::string* why = nullptr) {
  return selectorsMatch(s, a, pod, why);
}

TEST(Selectors, EmptyMatchesAnything) {
  const auto pod = plannerPod();
  EXPECT_TRUE(match({}, kubectlInPod(), &pod));
  EXPECT_TRUE(match({}, kubectlInPod(), nullptr));
}

TEST(Selectors, UidAndGidAreAnyOf) {
  Selectors s;
  s.uid = {0, 1000};
  EXPECT_TRUE(match(s, kubectlInPod(), nullptr));
  s.uid = {1001};
  std::string why;
  EXPECT_FALSE(match(s, kubectlInPod(), nullptr, &why));
  EXPECT_EQ(why, "uid 1000 not in [1001]");
  s = {};
  s.gid = {1000};
  EXPECT_TRUE(match(s, kubectlInPod(), nullptr));
  s.gid = {5};
  EXPECT_FALSE(match(s, kubectlInPod(), nullptr, &why));
  EXPECT_EQ(why, "gid 1000 not in [5]");
}

TEST(Selectors, ExeCommAndCgroupAreGlobs) {
  Selectors s;
  s.exe = {"/usr/local/bin/kube*"};
  EXPECT_TRUE(match(s, kubectlInPod(), nullptr));
  s.exe = {"/usr/bin/*", "/usr/local/*"};  // '*' crosses '/'
  EXPECT_TRUE(match(s, kubectlInPod(), nullptr));
  s.exe = {"/usr/bin/kubectl"};
  std::string why;
  EXPECT_FALSE(match(s, kubectlInPod(), nullptr, &why));
  EXPECT_EQ(why, "exe \"/usr/local/bin/kubectl\" does not match [/usr/bin/kubectl]");

  s = {};
  s.comm = {"kube?tl"};
  EXPECT_TRUE(match(s, kubectlInPod(), nullptr));
  s.comm = {"python3"};
  EXPECT_FALSE(match(s, kubectlInPod(), nullptr));

  s = {};
  s.cgroup = {"/kubepods.slice/*"};
  EXPECT_TRUE(match(s, kubectlInPod(), nullptr));
  s.cgroup = {"/system.slice/*"};
  EXPECT_FALSE(match(s, kubectlInPod(), nullptr));
}

TEST(Selectors, AnUnknownExeNeverMatchesAGlob) {
  auto a = kubectlInPod();
  a.exe.clear();  // the process exited before lookup: only the kernel's fields are known
  a.process_exited = true;
  Selectors s;
  s.exe = {"*"};
  EXPECT_FALSE(match(s, a, nullptr));
}

TEST(Selectors, ContainerIdFullOrTwelveCharacterPrefix) {
  Selectors s;
  s.container_id = {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"};
  EXPECT_TRUE(match(s, kubectlInPod(), nullptr));
  s.container_id = {"0123456789ab"};
  EXPECT_TRUE(match(s, kubectlInPod(), nullptr));
  s.container_id = {"0123456789a"};  // too short to be a Docker short id
  EXPECT_FALSE(match(s, kubectlInPod(), nullptr));
  s.container_id = {"ffffffffffff"};
  EXPECT_FALSE(match(s, kubectlInPod(), nullptr));
}

TEST(Selectors, KubernetesSelectorsNeedThePod) {
  const auto pod = plannerPod();
  Selectors s;
  s.k8s_namespace = {"agents"};
  s.k8s_service_account = {"planner"};
  s.k8s_pod_label = {"app=planner", "tier=ai"};
  EXPECT_TRUE(match(s, kubectlInPod(), &pod));
  std::string why;
  EXPECT_FALSE(match(s, kubectlInPod(), nullptr, &why));
  EXPECT_EQ(why, "pod 1f2e3d4c-aaaa-bbbb-cccc-0123456789ab is not known to the API server");
  auto host = kubectlInPod();
  host.pod_uid.clear();
  EXPECT_FALSE(match(s, host, nullptr, &why));
  EXPECT_EQ(why, "not a Kubernetes pod");
}

TEST(Selectors, EachKubernetesKind) {
  const auto pod = plannerPod();
  std::string why;
  Selectors s;
  s.k8s_namespace = {"default", "agents"};
  EXPECT_TRUE(match(s, kubectlInPod(), &pod));
  s.k8s_namespace = {"default"};
  EXPECT_FALSE(match(s, kubectlInPod(), &pod, &why));
  EXPECT_EQ(why, "pod namespace \"agents\" not in [default]");

  s = {};
  s.k8s_service_account = {"other"};
  EXPECT_FALSE(match(s, kubectlInPod(), &pod, &why));
  EXPECT_EQ(why, "service account \"planner\" not in [other]");

  s = {};
  s.k8s_pod_label = {"app=planner", "tier=web"};  // every label must hold
  EXPECT_FALSE(match(s, kubectlInPod(), &pod, &why));
  EXPECT_EQ(why, "pod label tier=web not present");
  s.k8s_pod_label = {"missing=x"};
  EXPECT_FALSE(match(s, kubectlInPod(), &pod));
  s.k8s_pod_label = {"app="};
  EXPECT_FALSE(match(s, kubectlInPod(), &pod));
}

TEST(Selectors, EveryKindMustHold) {
  const auto pod = plannerPod();
  Selectors s;
  s.uid = {1000};
  s.comm = {"kubectl"};
  s.k8s_namespace = {"agents"};
  EXPECT_TRUE(match(s, kubectlInPod(), &pod));
  s.comm = {"curl"};
  EXPECT_FALSE(match(s, kubectlInPod(), &pod));
}

TEST(Workload, PodThenContainerThenCgroupThenHost) {
  auto a = kubectlInPod();
  EXPECT_EQ(workloadOf(a).str(), "pod:1f2e3d4c-aaaa-bbbb-cccc-0123456789ab");
  a.pod_uid.clear();
  EXPECT_EQ(workloadOf(a).kind, "container");
  a.container_id.clear();
  EXPECT_EQ(workloadOf(a).kind, "cgroup");
  a.cgroup_path = "/";
  EXPECT_EQ(workloadOf(a).str(), "host:");
  a.status = Status::kUnattributed;
  EXPECT_EQ(workloadOf(a).kind, "unknown");
}

Config config(const std::string& attribution, const std::string& on_mismatch) {
  Config c = defaultConfig("/tmp/unused");
  c.attribution = attribution;
  c.identity.on_mismatch = on_mismatch;
  return c;
}

TEST(Verify, DecisionsForEveryMode) {
  AgentEntry bound{"planner", "", {}};
  bound.selectors.uid = {1000};
  AgentEntry other_uid{"planner", "", {}};
  other_uid.selectors.uid = {2000};
  AgentEntry unbound{"helper", "", {}};
  const auto a = kubectlInPod();

  EXPECT_EQ(verifyIdentity(&bound, a, nullptr, config("required", "reject")).verification,
            Verification::kVerified);
  auto denied = verifyIdentity(&other_uid, a, nullptr, config("required", "reject"));
  EXPECT_EQ(denied.verification, Verification::kDenied);
  EXPECT_EQ(denied.reason, "credential does not belong to this workload: uid 1000 not in [2000]");
  EXPECT_EQ(verifyIdentity(&other_uid, a, nullptr, config("required", "record")).verification,
            Verification::kUnverified);
  EXPECT_EQ(verifyIdentity(&unbound, a, nullptr, config("required", "reject")).verification,
            Verification::kUnbound);

  auto unattributed = a;
  unattributed.status = Status::kUnattributed;
  EXPECT_EQ(
      verifyIdentity(&bound, unattributed, nullptr, config("required", "record")).verification,
      Verification::kDenied);
  EXPECT_EQ(
      verifyIdentity(&bound, unattributed, nullptr, config("optional", "reject")).verification,
      Verification::kUnverified);
  auto unavailable = a;
  unavailable.status = Status::kUnavailable;
  EXPECT_EQ(verifyIdentity(&bound, unavailable, nullptr, config("off", "reject")).verification,
            Verification::kUnverified);
  EXPECT_EQ(verifyIdentity(&unbound, unavailable, nullptr, config("off", "reject")).verification,
            Verification::kUnbound);
  EXPECT_STREQ(verificationName(Verification::kUnverified), "unverified");
}

}  // namespace
}  // namespace kscribe
