#include "agent/session_key.h"

#include "agent/identity.h"

namespace kscribe {

SessionKey sessionKeyFor(const proxy::ConnectionInfo& connection) {
  SessionKey key;
  key.agent = connection.agent;
  Workload w =
      connection.attribution ? workloadOf(*connection.attribution) : Workload{"unknown", ""};
  key.workload_kind = std::move(w.kind);
  key.workload = std::move(w.id);
  return key;
}

}  // namespace kscribe
