#include "agent/session_key.h"

namespace kscribe {

SessionKey sessionKeyFor(const proxy::ConnectionInfo& connection) {
  SessionKey key;
  key.agent = connection.agent;
  const proxy::Attribution* a = connection.attribution.get();
  if (a && !a->pod_uid.empty()) {
    key.workload_kind = "pod";
    key.workload = a->pod_uid;
  } else if (a && !a->container_id.empty()) {
    key.workload_kind = "container";
    key.workload = a->container_id;
  } else if (a && !a->cgroup_path.empty()) {
    key.workload_kind = "cgroup";
    key.workload = a->cgroup_path;
  } else {
    key.workload_kind = "host";
    key.workload = "host";
  }
  return key;
}

}  // namespace kscribe
