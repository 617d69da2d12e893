#include "agent/identity.h"

#include <fnmatch.h>

#include <algorithm>

#include "agent/metrics.h"
#include "agent/pod_directory.h"
#include "proxy/log.h"

namespace kscribe {
namespace {

// Globs follow fnmatch(3) without FNM_PATHNAME: '*' also matches '/', so "/kubepods/*" covers
// nested cgroups and "/opt/agents/*" any executable below it.
bool glob(const std::string& pattern, const std::string& value) {
  return ::fnmatch(pattern.c_str(), value.c_str(), 0) == 0;
}

template <typename T>
std::string listText(const std::vector<T>& values) {
  std::string s = "[";
  for (const auto& v : values) {
    if (s.size() > 1) s += ", ";
    if constexpr (std::is_same_v<T, std::string>) {
      s += v;
    } else {
      s += std::to_string(v);
    }
  }
  return s + "]";
}

// Any of `patterns` matches `value`; on failure sets `why` to "<what> <value> not in <patterns>".
bool anyGlob(const std::vector<std::string>& patterns, const std::string& value, const char* what,
             std::string* why) {
  if (patterns.empty()) return true;
  if (!value.empty() && std::any_of(patterns.begin(), patterns.end(),
                                    [&](const std::string& p) { return glob(p, value); })) {
    return true;
  }
  if (why) *why = std::string(what) + " \"" + value + "\" does not match " + listText(patterns);
  return false;
}

bool anyId(const std::vector<std::uint32_t>& ids, std::uint32_t value, const char* what,
           std::string* why) {
  if (ids.empty() || std::find(ids.begin(), ids.end(), value) != ids.end()) return true;
  if (why) *why = std::string(what) + " " + std::to_string(value) + " not in " + listText(ids);
  return false;
}

// Container ids match in full or by a unique prefix of at least 12 characters (Docker's short id).
bool containerMatches(const std::string& want, const std::string& have) {
  if (want == have) return true;
  return want.size() >= 12 && have.size() > want.size() && have.compare(0, want.size(), want) == 0;
}

bool needsPod(const Selectors& s) {
  return !s.k8s_namespace.empty() || !s.k8s_service_account.empty() || !s.k8s_pod_label.empty();
}

}  // namespace

const char* verificationName(Verification v) {
  switch (v) {
    case Verification::kVerified:
      return "verified";
    case Verification::kUnbound:
      return "unbound";
    case Verification::kUnverified:
      return "unverified";
    case Verification::kDenied:
      return "denied";
  }
  return "denied";
}

Workload workloadOf(const proxy::Attribution& a) {
  if (a.status != proxy::Attribution::Status::kAttributed) return {"unknown", ""};
  if (!a.pod_uid.empty()) return {"pod", a.pod_uid};
  if (!a.container_id.empty()) return {"container", a.container_id};
  if (!a.cgroup_path.empty() && a.cgroup_path != "/") return {"cgroup", a.cgroup_path};
  if (a.cgroup_path.empty() && a.cgroup_id > 1)
    return {"cgroup", "id:" + std::to_string(a.cgroup_id)};
  return {"host", ""};
}

bool selectorsMatch(const Selectors& s, const proxy::Attribution& a, const PodInfo* pod,
                    std::string* why) {
  if (!anyId(s.uid, a.uid, "uid", why) || !anyId(s.gid, a.gid, "gid", why)) return false;
  if (!anyGlob(s.exe, a.exe, "exe", why) || !anyGlob(s.comm, a.comm, "comm", why) ||
      !anyGlob(s.cgroup, a.cgroup_path, "cgroup", why)) {
    return false;
  }
  if (!s.container_id.empty() &&
      std::none_of(s.container_id.begin(), s.container_id.end(),
                   [&](const std::string& c) { return containerMatches(c, a.container_id); })) {
    if (why) *why = "container \"" + a.container_id + "\" not in " + listText(s.container_id);
    return false;
  }
  if (!needsPod(s)) return true;
  if (!pod) {
    if (why)
      *why = a.pod_uid.empty() ? "not a Kubernetes pod"
                               : "pod " + a.pod_uid + " is not known to the API server";
    return false;
  }
  auto exact = [](const std::vector<std::string>& want, const std::string& have) {
    return want.empty() || std::find(want.begin(), want.end(), have) != want.end();
  };
  if (!exact(s.k8s_namespace, pod->namespace_name)) {
    if (why)
      *why = "pod namespace \"" + pod->namespace_name + "\" not in " + listText(s.k8s_namespace);
    return false;
  }
  if (!exact(s.k8s_service_account, pod->service_account)) {
    if (why)
      *why = "service account \"" + pod->service_account + "\" not in " +
             listText(s.k8s_service_account);
    return false;
  }
  // Pod labels are a label selector: every listed key=value must hold.
  for (const auto& kv : s.k8s_pod_label) {
    const auto eq = kv.find('=');
    const auto it = pod->labels.find(kv.substr(0, eq));
    if (it == pod->labels.end() || it->second != kv.substr(eq + 1)) {
      if (why) *why = "pod label " + kv + " not present";
      return false;
    }
  }
  return true;
}

IdentityDecision verifyIdentity(const AgentEntry* agent, const proxy::Attribution& a,
                                const PodInfo* pod, const Config& config) {
  IdentityDecision d;
  d.workload = workloadOf(a);
  const bool has_selectors = agent && !agent->selectors.empty();
  using Status = proxy::Attribution::Status;
  if (a.status != Status::kAttributed) {
    // The kernel has no account of this connection: never guess (issue: attribution modes).
    if (config.attribution == "required") {
      d.verification = Verification::kDenied;
      d.reason = a.status == Status::kUnattributed ? "connection was not attributed to a process"
                                                   : "attribution is unavailable";
    } else if (has_selectors) {
      d.verification = Verification::kUnverified;
      d.reason = std::string("selectors not checked: attribution ") +
                 proxy::Attribution::statusName(a.status);
    } else {
      d.verification = Verification::kUnbound;
      d.reason = "agent has no selectors";
    }
    return d;
  }
  if (!has_selectors) {
    d.verification = Verification::kUnbound;
    d.reason = "agent has no selectors";
    return d;
  }
  std::string why;
  if (selectorsMatch(agent->selectors, a, pod, &why)) {
    d.verification = Verification::kVerified;
    d.reason = "all selectors match";
    return d;
  }
  d.verification =
      config.identity.on_mismatch == "record" ? Verification::kUnverified : Verification::kDenied;
  d.reason = "credential does not belong to this workload: " + why;
  return d;
}

bool needsPodMetadata(const IdentityConfig& identity) {
  return std::any_of(identity.agents.begin(), identity.agents.end(), [](const AgentEntry& a) {
    return !a.selectors.k8s_namespace.empty() || !a.selectors.k8s_service_account.empty() ||
           !a.selectors.k8s_pod_label.empty();
  });
}

IdentityVerifier::IdentityVerifier(const Config& config, PodDirectory* pods)
    : config_(config), pods_(pods) {}

proxy::IdentityCheck::Result IdentityVerifier::check(const proxy::ConnectionInfo& c) {
  Result result;
  const auto& agents = config_.identity.agents;
  const auto it = std::find_if(agents.begin(), agents.end(),
                               [&](const AgentEntry& a) { return a.name == c.agent; });
  const proxy::Attribution& a = *c.attribution;
  IdentityDecision d;
  std::optional<PodInfo> pod;
  if (it == agents.end()) {
    // A certificate the CA signed for an agent since removed from the registry: removal revokes.
    d.verification = Verification::kDenied;
    d.reason = "agent \"" + c.agent + "\" is not in the registry (identity.agents)";
    d.workload = workloadOf(a);
  } else {
    if (pods_ && !a.pod_uid.empty() && !it->selectors.empty()) pod = pods_->find(a.pod_uid);
    d = verifyIdentity(&*it, a, pod ? &*pod : nullptr, config_);
  }
  auto id = std::make_shared<proxy::VerifiedIdentity>();
  id->verification = verificationName(d.verification);
  id->reason = d.reason;
  id->workload = d.workload.str();
  if (pod) {
    id->pod_namespace = pod->namespace_name;
    id->pod_name = pod->name;
    id->pod_service_account = pod->service_account;
  }
  result.identity = id;
  if (d.verification == Verification::kDenied) {
    metrics::get()
        .identityRejection(c.agent, d.reason.rfind("credential", 0) == 0 ? "mismatch" : "refused")
        .inc();
    log::warn("identity: refused agent " + c.agent + " from pid " + std::to_string(a.tgid) + " (" +
              a.comm + ", uid " + std::to_string(a.uid) + ", " + id->workload + "): " + d.reason);
    result.refusal = proxy::Refusal{403, "Forbidden", "kscribe: " + d.reason};
  }
  return result;
}

}  // namespace kscribe
