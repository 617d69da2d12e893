#include "agent/audit_line.h"

#include <charconv>
#include <nlohmann/json.hpp>

#include "agent/durable_file.h"
#include "agent/json_writer.h"

namespace kscribe {
namespace {

// Canonical text pieces: keys are written in std::map byte order by the caller; strings are
// ASCII-escaped as dump(-1, ' ', true, replace) does.
void str(std::string& out, std::string_view s) { appendJsonQuotedAscii(out, s); }

void strOrNull(std::string& out, std::string_view s) {
  if (s.empty()) {
    out.append("null");
  } else {
    appendJsonQuotedAscii(out, s);
  }
}

template <class Int>
void num(std::string& out, Int v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void canonicalProcess(std::string& out, const proxy::Attribution* a) {
  if (!a) {
    out.append("null");
    return;
  }
  out.append("{\"attribution\":");
  str(out, proxy::Attribution::statusName(a->status));
  if (a->status != proxy::Attribution::Status::kAttributed) {
    out.push_back('}');
    return;
  }
  out.append(",\"cgroup_id\":");
  num(out, a->cgroup_id);
  out.append(",\"cgroup_path\":");
  str(out, a->cgroup_path);
  out.append(",\"comm\":");
  str(out, a->comm);
  out.append(",\"container_id\":");
  str(out, a->container_id);
  out.append(",\"container_runtime\":");
  str(out, a->container_runtime);
  out.append(",\"exe\":");
  str(out, a->exe);
  out.append(",\"exited\":");
  out.append(a->process_exited ? "true" : "false");
  out.append(",\"gid\":");
  num(out, a->gid);
  out.append(",\"pod_uid\":");
  str(out, a->pod_uid);
  out.append(",\"ppid\":");
  num(out, a->ppid);
  out.append(",\"start_time\":");
  num(out, a->start_time);
  out.append(",\"tgid\":");
  num(out, a->tgid);
  out.append(",\"tid\":");
  num(out, a->tid);
  out.append(",\"uid\":");
  num(out, a->uid);
  out.push_back('}');
}

}  // namespace

nlohmann::ordered_json processObject(const proxy::Attribution* a) {
  using ojson = nlohmann::ordered_json;
  if (!a) return nullptr;
  ojson p;
  p["attribution"] = proxy::Attribution::statusName(a->status);
  if (a->status != proxy::Attribution::Status::kAttributed) return p;
  p["tgid"] = a->tgid;
  p["tid"] = a->tid;
  p["start_time"] = a->start_time;
  p["uid"] = a->uid;
  p["gid"] = a->gid;
  p["comm"] = a->comm;
  p["exe"] = a->exe;
  p["ppid"] = a->ppid;
  p["exited"] = a->process_exited;
  p["cgroup_id"] = a->cgroup_id;
  p["cgroup_path"] = a->cgroup_path;
  p["container_runtime"] = a->container_runtime;
  p["container_id"] = a->container_id;
  p["pod_uid"] = a->pod_uid;
  return p;
}

void appendProcessJson(std::string& out, const proxy::Attribution* a) {
  if (!a) {
    out.append("null");
    return;
  }
  JsonObjectWriter p(out);
  p.str("attribution", proxy::Attribution::statusName(a->status));
  if (a->status == proxy::Attribution::Status::kAttributed) {
    p.unum("tgid", a->tgid).unum("tid", a->tid).unum("start_time", a->start_time);
    p.unum("uid", a->uid).unum("gid", a->gid).str("comm", a->comm).str("exe", a->exe);
    p.unum("ppid", a->ppid).boolean("exited", a->process_exited);
    p.unum("cgroup_id", a->cgroup_id).str("cgroup_path", a->cgroup_path);
    p.str("container_runtime", a->container_runtime).str("container_id", a->container_id);
    p.str("pod_uid", a->pod_uid);
  }
  p.close();
}

std::string appendAuditLine(std::string& out, const ExchangeRecord& rec, std::string_view timestamp,
                            std::string_view prev_hash, std::string& scratch) {
  // The keys in std::map (byte) order, as canonicalJson() emits them.
  std::string& t = scratch;
  t.clear();
  t.append("{\"agent\":");
  strOrNull(t, rec.agent);
  t.append(",\"api_group\":");
  str(t, rec.api.api_group);
  t.append(",\"auth_method\":");
  strOrNull(t, rec.auth_method);
  t.append(",\"connection_id\":");
  num(t, rec.connection_id);
  t.append(",\"decision\":");
  str(t, rec.decision);
  t.append(",\"error\":");
  strOrNull(t, rec.error);
  t.append(",\"hash\":\"");
  const std::size_t hash_at = t.size();  // the hash is computed with it empty, then spliced in
  t.append("\",\"latency_us\":");
  num(t, rec.latency_us);
  t.append(",\"message\":");
  strOrNull(t, rec.message);
  t.append(",\"method\":");
  str(t, rec.method);
  t.append(",\"name\":");
  strOrNull(t, rec.api.name);
  t.append(",\"namespace\":");
  strOrNull(t, rec.api.namespace_name);
  t.append(",\"path\":");
  str(t, rec.path);
  t.append(",\"prev_hash\":");
  str(t, prev_hash);
  t.append(",\"process\":");
  canonicalProcess(t, rec.process.get());
  t.append(",\"query\":");
  strOrNull(t, rec.api.query);
  t.append(",\"resource\":");
  strOrNull(t, rec.api.resource);
  t.append(",\"seq\":");
  if (rec.session) {
    num(t, rec.seq);
  } else {
    t.append("null");
  }
  t.append(",\"session_id\":");
  if (rec.session) {
    strOrNull(t, rec.session->id);
  } else {
    t.append("null");
  }
  t.append(",\"spiffe_id\":");
  strOrNull(t, rec.spiffe_id);
  t.append(",\"status\":");
  num(t, rec.status);
  t.append(",\"subresource\":");
  strOrNull(t, rec.api.subresource);
  t.append(",\"tier\":");
  num(t, static_cast<int>(rec.tier));
  t.append(",\"tier_name\":");
  str(t, tierName(rec.tier));
  t.append(",\"timestamp\":");
  str(t, timestamp);
  t.append(",\"verb\":");
  str(t, rec.api.verb);
  t.append(",\"workload\":{\"id\":");
  str(t, rec.key.workload);
  t.append(",\"kind\":");
  str(t, rec.key.workload_kind);
  t.append("}}");
  std::string hash = durable::sha256Hex(t);
  out.append(t, 0, hash_at);
  out.append(hash);
  out.append(t, hash_at, std::string::npos);
  return hash;
}

}  // namespace kscribe
