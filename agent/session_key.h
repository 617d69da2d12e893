#pragma once
// What groups exchanges into one session: the agent plus the workload it runs in. Built in one
// place (sessionKeyFor) so the verified identity of issue 6 can replace the rule without touching
// the session manager.

#include <compare>
#include <string>

#include "proxy/tap.h"

namespace kscribe {

/// Agent name plus workload; two pods sharing an agent name get two sessions.
struct SessionKey {
  std::string agent;
  std::string workload_kind;  // "pod" | "container" | "cgroup" | "host" | "unknown"
  std::string workload;       // pod uid, container id, cgroup path; "" for host/unknown
  auto operator<=>(const SessionKey&) const = default;
};

/// The session key for an exchange on `connection`: the agent plus identity.h's workloadOf (pod
/// uid, else container id, else cgroup path, else host; "unknown" when unattributed).
SessionKey sessionKeyFor(const proxy::ConnectionInfo& connection);

}  // namespace kscribe
