#include "agent/tier.h"

#include <yajl/yajl_parse.h>

#include <array>

namespace kscribe {
namespace {

enum class MethodClass : std::uint8_t { kRead, kWrite, kDelete, kAny };

MethodClass methodClass(std::string_view method) {
  if (method == "GET" || method == "HEAD" || method == "OPTIONS") return MethodClass::kRead;
  if (method == "DELETE") return MethodClass::kDelete;
  return MethodClass::kWrite;  // POST, PUT, PATCH and anything unknown
}

// One row of DESIGN.md's table. An empty field matches anything; "*" in group matches any group.
// The first matching row wins, so more specific and higher rows come first.
struct Rule {
  MethodClass methods;
  std::string_view group;
  std::string_view resource;
  std::string_view subresource;
  Tier tier;
};

constexpr std::string_view kAny = "*";

// kWrite rows also apply to DELETE (a delete of RBAC is break-glass, not just sensitive).
constexpr std::array kRules{
    // BREAK-GLASS: interactive access to workloads and nodes.
    Rule{MethodClass::kAny, kAny, "", "exec", Tier::kBreakGlass},
    Rule{MethodClass::kAny, kAny, "", "attach", Tier::kBreakGlass},
    Rule{MethodClass::kAny, kAny, "", "portforward", Tier::kBreakGlass},
    Rule{MethodClass::kAny, kAny, "", "proxy", Tier::kBreakGlass},
    // BREAK-GLASS: writes that change who may do what, or what the cluster is.
    Rule{MethodClass::kWrite, "rbac.authorization.k8s.io", "", "", Tier::kBreakGlass},
    Rule{MethodClass::kWrite, "admissionregistration.k8s.io", "", "", Tier::kBreakGlass},
    Rule{MethodClass::kWrite, "apiextensions.k8s.io", "customresourcedefinitions", "",
         Tier::kBreakGlass},
    Rule{MethodClass::kWrite, "", "namespaces", "", Tier::kBreakGlass},
    Rule{MethodClass::kWrite, "", "persistentvolumes", "", Tier::kBreakGlass},
    // SENSITIVE.
    Rule{MethodClass::kDelete, kAny, "", "", Tier::kSensitive},
    Rule{MethodClass::kRead, kAny, "secrets", "", Tier::kSensitive},
    Rule{MethodClass::kWrite, kAny, "pods", "eviction", Tier::kSensitive},
    Rule{MethodClass::kWrite, "", "serviceaccounts", "token", Tier::kSensitive},
    Rule{MethodClass::kWrite, "authentication.k8s.io", "tokenreviews", "", Tier::kSensitive},
    // OPERATE.
    Rule{MethodClass::kWrite, kAny, "", "scale", Tier::kOperate},
    // OBSERVE / MODIFY: everything else, by method.
    Rule{MethodClass::kRead, kAny, "", "", Tier::kObserve},
    Rule{MethodClass::kWrite, kAny, "", "", Tier::kModify},
};

bool matches(const Rule& rule, MethodClass method, const ApiRequest& r) {
  if (rule.methods != MethodClass::kAny && rule.methods != method &&
      !(rule.methods == MethodClass::kWrite && method == MethodClass::kDelete)) {
    return false;
  }
  if (rule.group != kAny && rule.group != r.api_group) return false;
  if (!rule.resource.empty() && rule.resource != r.resource) return false;
  if (!rule.subresource.empty() && rule.subresource != r.subresource) return false;
  return true;
}

// kubectl rollout restart targets these (polymorphichelpers/objectrestarter.go).
bool isRestartable(const ApiRequest& r) {
  return r.api_group == "apps" && r.subresource.empty() && !r.name.empty() &&
         (r.resource == "deployments" || r.resource == "daemonsets" ||
          r.resource == "statefulsets");
}

// SAX matcher for
// {"spec":{"template":{"metadata":{"annotations":{"kubectl...restartedAt":"..."}}}}}.
struct RestartMatcher {
  static constexpr std::array<std::string_view, 5> kPath{
      "spec", "template", "metadata", "annotations", "kubectl.kubernetes.io/restartedAt"};
  int depth = 0;          // open maps
  int keys_at_depth = 0;  // keys seen in the innermost map
  bool ok = true;
  bool saw_value = false;

  static int onMapStart(void* ctx) {
    auto* m = static_cast<RestartMatcher*>(ctx);
    // A map is allowed at depth 0 (top) and as the value of the first four path keys.
    if (m->depth > 4) return m->ok = false;
    ++m->depth;
    m->keys_at_depth = 0;
    return 1;
  }
  static int onMapKey(void* ctx, const unsigned char* key, size_t len) {
    auto* m = static_cast<RestartMatcher*>(ctx);
    const std::string_view k(reinterpret_cast<const char*>(key), len);
    if (m->depth < 1 || m->depth > 5 || ++m->keys_at_depth > 1 || k != kPath[m->depth - 1]) {
      return m->ok = false;
    }
    return 1;
  }
  static int onMapEnd(void* ctx) {
    auto* m = static_cast<RestartMatcher*>(ctx);
    if (m->keys_at_depth != 1) return m->ok = false;
    --m->depth;
    return 1;
  }
  static int onString(void* ctx, const unsigned char*, size_t) {
    auto* m = static_cast<RestartMatcher*>(ctx);
    if (m->depth != 5 || m->saw_value) return m->ok = false;
    m->saw_value = true;
    return 1;
  }
  static int reject(void* ctx) { return static_cast<RestartMatcher*>(ctx)->ok = false; }
  static int rejectBool(void* ctx, int) { return reject(ctx); }
  static int rejectNumber(void* ctx, const char*, size_t) { return reject(ctx); }
};

}  // namespace

bool isRolloutRestartPatch(std::string_view body) {
  if (body.empty() || body.size() > kMaxRestartPatchSize) return false;
  static const yajl_callbacks kCallbacks{RestartMatcher::reject,
                                         RestartMatcher::rejectBool,
                                         nullptr,
                                         nullptr,
                                         RestartMatcher::rejectNumber,
                                         RestartMatcher::onString,
                                         RestartMatcher::onMapStart,
                                         RestartMatcher::onMapKey,
                                         RestartMatcher::onMapEnd,
                                         RestartMatcher::reject,
                                         RestartMatcher::reject};
  RestartMatcher m;
  yajl_handle h = yajl_alloc(&kCallbacks, nullptr, &m);
  if (h == nullptr) return false;
  bool ok = yajl_parse(h, reinterpret_cast<const unsigned char*>(body.data()), body.size()) ==
                yajl_status_ok &&
            yajl_complete_parse(h) == yajl_status_ok;
  yajl_free(h);
  return ok && m.ok && m.saw_value && m.depth == 0;
}

Tier classify(std::string_view method, const ApiRequest& request, bool upgrade,
              std::string_view content_type_or_patch_body_hint) {
  // An upgraded connection is relayed unrecorded: whatever it is, it is break-glass.
  if (upgrade) return Tier::kBreakGlass;
  const MethodClass mc = methodClass(method);
  if (!request.is_resource) {
    // /version, /apis, /openapi, /healthz, a malformed path: by method alone.
    if (request.malformed && mc == MethodClass::kRead) return Tier::kSensitive;
    return mc == MethodClass::kRead     ? Tier::kObserve
           : mc == MethodClass::kDelete ? Tier::kSensitive
                                        : Tier::kModify;
  }
  for (const Rule& rule : kRules) {
    if (!matches(rule, mc, request)) continue;
    if (rule.tier == Tier::kModify && method == "PATCH" && isRestartable(request) &&
        isRolloutRestartPatch(content_type_or_patch_body_hint)) {
      return Tier::kOperate;
    }
    return rule.tier;
  }
  return Tier::kModify;
}

Tier classifyWithBody(std::string_view method, const ApiRequest& request, bool upgrade,
                      bool rollout_restart_patch) {
  const Tier tier = classify(method, request, upgrade);
  if (tier == Tier::kModify && rollout_restart_patch && method == "PATCH" &&
      isRestartable(request)) {
    return Tier::kOperate;
  }
  return tier;
}

const char* tierName(Tier tier) {
  switch (tier) {
    case Tier::kObserve:
      return "OBSERVE";
    case Tier::kOperate:
      return "OPERATE";
    case Tier::kModify:
      return "MODIFY";
    case Tier::kSensitive:
      return "SENSITIVE";
    case Tier::kBreakGlass:
      return "BREAK-GLASS";
  }
  return "UNKNOWN";
}

}  // namespace kscribe
