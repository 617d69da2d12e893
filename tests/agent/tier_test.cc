#include "agent/tier.h"

#include <gtest/gtest.h>

#include "agent/api_request.h"

namespace kscribe {
namespace {

struct Case {
  const char* method;
  const char* target;
  Tier tier;
  bool upgrade = false;
  const char* body = "";
};

constexpr const char* kRestartPatch =
    R"({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-02-10T14:30:22Z"}}}}})";

// One row per line of DESIGN.md's tier table, plus the edges that decide between rows.
const Case kCases[] = {
    // 0 OBSERVE: get, list, watch of anything but the sensitive.
    {"GET", "/api/v1/namespaces/payments/pods", Tier::kObserve},
    {"GET", "/api/v1/namespaces/payments/pods/web-1", Tier::kObserve},
    {"GET", "/api/v1/pods?watch=true", Tier::kObserve},
    {"GET", "/api/v1/watch/namespaces/a/pods", Tier::kObserve},
    {"HEAD", "/apis/apps/v1/deployments", Tier::kObserve},
    {"OPTIONS", "/apis/apps/v1/namespaces/a/deployments/web", Tier::kObserve},
    {"GET", "/api/v1/namespaces/a/pods/web-1/log", Tier::kObserve},
    {"GET", "/api/v1/namespaces/a/configmaps/c", Tier::kObserve},
    {"GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", Tier::kObserve},
    {"GET", "/api/v1/namespaces", Tier::kObserve},
    {"GET", "/version", Tier::kObserve},
    {"GET", "/apis", Tier::kObserve},
    {"GET", "/api/v1", Tier::kObserve},
    {"GET", "/openapi/v3", Tier::kObserve},
    {"GET", "/apis/apps/v1/namespaces/a/deployments/web/scale", Tier::kObserve},
    // 1 OPERATE: scale subresource, rollout restart patch.
    {"PUT", "/apis/apps/v1/namespaces/a/deployments/web/scale", Tier::kOperate},
    {"PATCH", "/apis/apps/v1/namespaces/a/statefulsets/db/scale", Tier::kOperate},
    {"PATCH", "/api/v1/namespaces/a/replicationcontrollers/rc/scale", Tier::kOperate},
    {"PATCH", "/apis/apps/v1/namespaces/a/deployments/web", Tier::kOperate, false, kRestartPatch},
    {"PATCH", "/apis/apps/v1/namespaces/a/daemonsets/ds", Tier::kOperate, false, kRestartPatch},
    // 2 MODIFY: other POST, PUT, PATCH.
    {"PATCH", "/apis/apps/v1/namespaces/a/deployments/web", Tier::kModify},
    {"PATCH", "/apis/apps/v1/namespaces/a/deployments/web", Tier::kModify, false,
     R"({"spec":{"replicas":3,"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"x"}}}}})"},
    {"PATCH", "/apis/apps/v1/namespaces/a/deployments/web", Tier::kModify, false,
     R"({"spec":{"template":{"metadata":{"annotations":{"other":"x"}}}}})"},
    {"PATCH", "/api/v1/namespaces/a/configmaps/c", Tier::kModify, false, kRestartPatch},
    {"POST", "/api/v1/namespaces/a/configmaps", Tier::kModify},
    {"PUT", "/api/v1/namespaces/a/pods/p/status", Tier::kModify},
    {"POST", "/api/v1/namespaces/a/secrets", Tier::kModify},
    {"POST", "/apis/apps/v1/namespaces/a/deployments?dryRun=All", Tier::kModify},
    {"POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", Tier::kModify},
    // 3 SENSITIVE: every DELETE, any read of Secrets, evictions, token requests.
    {"DELETE", "/api/v1/namespaces/a/pods/p", Tier::kSensitive},
    {"DELETE", "/api/v1/namespaces/a/configmaps", Tier::kSensitive},
    {"DELETE", "/apis/apps/v1/namespaces/a/deployments/web", Tier::kSensitive},
    {"GET", "/api/v1/namespaces/a/secrets", Tier::kSensitive},
    {"GET", "/api/v1/namespaces/a/secrets/s", Tier::kSensitive},
    {"GET", "/api/v1/secrets?watch=1", Tier::kSensitive},
    {"GET", "/api/v1/watch/namespaces/a/secrets", Tier::kSensitive},
    {"HEAD", "/api/v1/namespaces/a/secrets/s", Tier::kSensitive},
    {"GET", "/api/v1/namespaces/a/secret%73/s", Tier::kSensitive},
    {"GET", "/api/v1/namespaces/a/pods/../secrets/s", Tier::kSensitive},
    {"GET", "//api/v1//namespaces/a/secrets/s", Tier::kSensitive},
    {"POST", "/api/v1/namespaces/a/pods/p/eviction", Tier::kSensitive},
    {"POST", "/apis/policy/v1/namespaces/a/pods/p/eviction", Tier::kSensitive},
    {"POST", "/api/v1/namespaces/a/serviceaccounts/default/token", Tier::kSensitive},
    {"POST", "/apis/authentication.k8s.io/v1/tokenreviews", Tier::kSensitive},
    {"DELETE", "/api/v1/namespaces/a/secrets/s", Tier::kSensitive},
    // 4 BREAK-GLASS: exec, attach, port-forward, proxy; writes to RBAC, admission webhooks,
    // CRDs, namespaces, persistent volumes.
    {"POST", "/api/v1/namespaces/a/pods/p/exec?command=sh&stdin=true", Tier::kBreakGlass},
    {"GET", "/api/v1/namespaces/a/pods/p/exec?command=sh", Tier::kBreakGlass, true},
    {"POST", "/api/v1/namespaces/a/pods/p/attach", Tier::kBreakGlass},
    {"POST", "/api/v1/namespaces/a/pods/p/portforward", Tier::kBreakGlass},
    {"GET", "/api/v1/namespaces/a/pods/p/proxy/metrics", Tier::kBreakGlass},
    {"GET", "/api/v1/namespaces/a/services/s:80/proxy/", Tier::kBreakGlass},
    {"GET", "/api/v1/nodes/n1/proxy/configz", Tier::kBreakGlass},
    {"GET", "/api/v1/proxy/namespaces/a/pods/p", Tier::kBreakGlass},
    {"GET", "/api/v1/namespaces/a/pods/p", Tier::kBreakGlass, true},
    {"POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", Tier::kBreakGlass},
    {"PUT", "/apis/rbac.authorization.k8s.io/v1/namespaces/a/roles/r", Tier::kBreakGlass},
    {"DELETE", "/apis/rbac.authorization.k8s.io/v1/namespaces/a/rolebindings/rb",
     Tier::kBreakGlass},
    {"POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
     Tier::kBreakGlass},
    {"PATCH", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/m",
     Tier::kBreakGlass},
    {"POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", Tier::kBreakGlass},
    {"DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.example.com",
     Tier::kBreakGlass},
    {"POST", "/api/v1/namespaces", Tier::kBreakGlass},
    {"DELETE", "/api/v1/namespaces/payments", Tier::kBreakGlass},
    {"PUT", "/api/v1/namespaces/payments/finalize", Tier::kBreakGlass},
    {"PATCH", "/api/v1/namespaces/payments", Tier::kBreakGlass},
    {"POST", "/api/v1/persistentvolumes", Tier::kBreakGlass},
    {"DELETE", "/api/v1/persistentvolumes/pv-1", Tier::kBreakGlass},
};

TEST(Tier, TableCoversEveryRow) {
  for (const Case& c : kCases) {
    const ApiRequest r = parseApiRequest(c.method, c.target);
    EXPECT_EQ(classify(c.method, r, c.upgrade, c.body), c.tier)
        << c.method << " " << c.target << " upgrade=" << c.upgrade << " body=" << c.body
        << " -> resource=" << r.resource << " sub=" << r.subresource << " group=" << r.api_group;
  }
}

TEST(Tier, ClassifyWithBody) {
  const ApiRequest deploy = parseApiRequest("PATCH", "/apis/apps/v1/namespaces/a/deployments/w");
  EXPECT_EQ(classifyWithBody("PATCH", deploy, false, true), Tier::kOperate);
  EXPECT_EQ(classifyWithBody("PATCH", deploy, false, false), Tier::kModify);
  const ApiRequest cm = parseApiRequest("PATCH", "/api/v1/namespaces/a/configmaps/c");
  EXPECT_EQ(classifyWithBody("PATCH", cm, false, true), Tier::kModify);
  const ApiRequest rb =
      parseApiRequest("PATCH", "/apis/rbac.authorization.k8s.io/v1/namespaces/a/roles/r");
  EXPECT_EQ(classifyWithBody("PATCH", rb, false, true), Tier::kBreakGlass);
}

TEST(Tier, Names) {
  EXPECT_STREQ(tierName(Tier::kObserve), "OBSERVE");
  EXPECT_STREQ(tierName(Tier::kOperate), "OPERATE");
  EXPECT_STREQ(tierName(Tier::kModify), "MODIFY");
  EXPECT_STREQ(tierName(Tier::kSensitive), "SENSITIVE");
  EXPECT_STREQ(tierName(Tier::kBreakGlass), "BREAK-GLASS");
}

TEST(ApiRequest, ParsesLikeTheApiServer) {
  ApiRequest r = parseApiRequest("GET", "/api/v1/namespaces/payments/pods?watch=true&rv=5");
  EXPECT_EQ(r.verb, "watch");
  EXPECT_TRUE(r.watch);
  EXPECT_EQ(r.api_group, "");
  EXPECT_EQ(r.api_version, "v1");
  EXPECT_EQ(r.resource, "pods");
  EXPECT_EQ(r.namespace_name, "payments");
  EXPECT_EQ(r.query, "watch=true&rv=5");

  r = parseApiRequest("PATCH", "/apis/apps/v1/namespaces/a/deployments/web/scale?dryRun=All");
  EXPECT_EQ(r.verb, "patch");
  EXPECT_EQ(r.api_group, "apps");
  EXPECT_EQ(r.resource, "deployments");
  EXPECT_EQ(r.name, "web");
  EXPECT_EQ(r.subresource, "scale");
  EXPECT_TRUE(r.dry_run);

  r = parseApiRequest("GET", "/api/v1/namespaces/a");
  EXPECT_EQ(r.resource, "namespaces");
  EXPECT_EQ(r.name, "a");
  EXPECT_EQ(r.verb, "get");

  r = parseApiRequest("DELETE", "/api/v1/namespaces/a/configmaps");
  EXPECT_EQ(r.verb, "deletecollection");

  r = parseApiRequest("GET", "/version");
  EXPECT_FALSE(r.is_resource);
  EXPECT_EQ(r.resource, "");

  r = parseApiRequest("GET", "/api/v1/namespaces/a/secrets/%zz");
  EXPECT_TRUE(r.malformed);
  EXPECT_TRUE(pathMayHoldSecret(r));
}

TEST(Tier, RolloutRestartPatchShape) {
  EXPECT_TRUE(isRolloutRestartPatch(kRestartPatch));
  EXPECT_FALSE(isRolloutRestartPatch(R"({"spec":{"template":{"metadata":{"annotations":{}}}}})"));
  EXPECT_FALSE(isRolloutRestartPatch(
      R"({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"x","b":"y"}}}}})"));
  EXPECT_FALSE(isRolloutRestartPatch(R"([{"op":"replace","path":"/spec/replicas","value":0}])"));
  EXPECT_FALSE(isRolloutRestartPatch("{"));
  EXPECT_FALSE(isRolloutRestartPatch(""));
}

}  // namespace
}  // namespace kscribe
