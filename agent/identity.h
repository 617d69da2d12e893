#pragma once
// Verified agent identity: the credential's claim (an agent name) checked against the kernel's
// account of who connected (attribution) and, for pods, the pod's metadata. Pure functions: the
// proxy and the pod directory feed them.

#include <map>
#include <optional>
#include <string>

#include "agent/config.h"
#include "proxy/attribution.h"
#include "proxy/tap.h"

namespace kscribe {

/// What the API server says about a pod (from its uid found in the cgroup path).
struct PodInfo {
  std::string uid;
  std::string namespace_name;
  std::string name;
  std::string service_account;
  std::map<std::string, std::string> labels;
};

/// How a connection's identity was established.
enum class Verification {
  kVerified,    // the agent has selectors and the workload satisfies all of them
  kUnbound,     // the agent has no selectors: accepted, bound to no workload
  kUnverified,  // mismatch or no attribution, let through by on_mismatch: record / attribution:
                // optional
  kDenied,      // mismatch or no attribution, refused
};
const char* verificationName(Verification v);

/// The workload a connection came from: pod uid, else container id, else cgroup path, else host.
struct Workload {
  std::string kind;  // "pod" | "container" | "cgroup" | "host" | "unknown"
  std::string id;
  std::string str() const { return kind + ":" + id; }
};
Workload workloadOf(const proxy::Attribution& attribution);

/// Whether every selector kind the agent sets is satisfied. On false, `why` names the first
/// selector that failed ("uid 1001 not in [1000]"). `pod` may be null (not a pod, or unknown).
bool selectorsMatch(const Selectors& selectors, const proxy::Attribution& attribution,
                    const PodInfo* pod, std::string* why);

struct IdentityDecision {
  Verification verification = Verification::kDenied;
  std::string reason;  // why, for the audit line and the 403 message
  Workload workload;
};

/// Decides a connection: `agent` is the registry entry the credential names (null: the credential
/// names an agent the registry does not list, which is allowed only for certificates with no
/// registry entries configured — treated like an agent without selectors).
IdentityDecision verifyIdentity(const AgentEntry* agent, const proxy::Attribution& attribution,
                                const PodInfo* pod, const Config& config);

class PodDirectory;

/// The proxy's identity check: the credential's agent must be in the registry, and the
/// connection's workload must satisfy that agent's selectors (per identity.on_mismatch and the
/// attribution mode). Pod metadata comes from `pods` (may be null: no Kubernetes selectors).
class IdentityVerifier : public proxy::IdentityCheck {
 public:
  IdentityVerifier(const Config& config, PodDirectory* pods);
  Result check(const proxy::ConnectionInfo& connection) override;

 private:
  const Config& config_;
  PodDirectory* pods_;
};

/// Whether any agent uses k8s.* selectors (only then does kscribe watch pods).
bool needsPodMetadata(const IdentityConfig& identity);

}  // namespace kscribe
