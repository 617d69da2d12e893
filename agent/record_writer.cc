#include "agent/record_writer.h"

#include <time.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "agent/audit_chain.h"
#include "agent/json_writer.h"
#include "agent/metrics.h"
#include "proxy/log.h"

namespace kscribe {
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;
using json = nlohmann::json;

namespace {

constexpr const char* kManifestSchema = "kscribe.session-manifest/v1";
constexpr const char* kOpenSuffix = ".open.json";
constexpr const char* kManifestSuffix = ".manifest.json";
// A manifest lists the distinct processes of a session up to this many; more are counted.
constexpr std::size_t kMaxManifestProcesses = 64;

// The process behind an exchange. The command line is left out on purpose: it can carry
// credentials (--token=...), which must never be written.
template <class J>
J processJson(const proxy::Attribution* a) {
  if (!a) return nullptr;
  J p;
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

template <class J>
J nullIfEmpty(const std::string& s) {
  return s.empty() ? J(nullptr) : J(s);
}

void putBody(JsonObjectWriter& line, const std::string& prefix,
             const std::optional<BodyCapture::Result>& b) {
  const bool has = b && b->body.has_value();
  line.unum(prefix + "_body_size", b ? b->wire_size : 0);
  if (has) {
    line.str(prefix + "_body_encoding", b->encoding);
  } else {
    line.null(prefix + "_body_encoding");
  }
  line.strOrNull(prefix + "_content_type", b ? std::string_view(b->content_type) : "");
  line.boolean(prefix + "_body_truncated", b && b->truncated);
  line.boolean(prefix + "_body_redacted", b && b->redacted);
  line.unum(prefix + "_body_redactions", b ? b->redactions : 0);
  line.strOrNull(prefix + "_body_omitted", b ? std::string_view(b->omitted_reason) : "");
}

ojson identityJson(const SessionInfo& s) {
  ojson m;
  m["schema"] = kManifestSchema;
  m["session_id"] = s.id;
  m["agent"] = s.key.agent;
  m["identity"] = {{"agent", s.key.agent},
                   {"spiffe_id", nullIfEmpty<ojson>(s.spiffe_id)},
                   {"auth_method", nullIfEmpty<ojson>(s.auth_method)},
                   {"workload_kind", s.key.workload_kind},
                   {"workload", s.key.workload},
                   // No identity check configured: nothing bound the credential to a workload.
                   {"verification", s.verified ? s.verified->verification : "unverified"}};
  if (s.verified) {
    m["identity"]["verification_reason"] = s.verified->reason;
    m["identity"]["pod_namespace"] = nullIfEmpty<ojson>(s.verified->pod_namespace);
    m["identity"]["pod_name"] = nullIfEmpty<ojson>(s.verified->pod_name);
    m["identity"]["pod_service_account"] = nullIfEmpty<ojson>(s.verified->pod_service_account);
  }
  m["process"] = processJson<ojson>(s.process.get());
  m["date"] = s.date;
  m["started"] = formatTimestamp(s.started);
  m["jsonl"] = s.jsonl.filename().string();
  return m;
}

}  // namespace

std::string formatTimestamp(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  if (ms % 1000 < 0) --secs;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(((ms % 1000) + 1000) % 1000));
  return buf;
}

struct RecordWriter::Stats {
  std::uint64_t requests = 0;
  std::uint64_t request_bytes = 0;
  std::uint64_t response_bytes = 0;
  std::uint64_t lost = 0;
  unsigned tiers = 0;
  std::set<std::pair<std::uint64_t, std::uint64_t>> seen_processes;
  ojson processes = ojson::array();
  std::uint64_t more_processes = 0;
  std::string last_timestamp;
  durable::Sha256 sha;

  void add(int tier, std::uint64_t req, std::uint64_t resp, const ojson& process,
           const std::string& timestamp) {
    ++requests;
    request_bytes += req;
    response_bytes += resp;
    if (tier >= 0 && tier < 8) tiers |= 1u << tier;
    last_timestamp = timestamp;
    if (process.is_object() && process.contains("tgid")) {
      auto id = std::make_pair(process["tgid"].get<std::uint64_t>(),
                               process["start_time"].get<std::uint64_t>());
      if (seen_processes.insert(id).second) {
        if (processes.size() < kMaxManifestProcesses) {
          processes.push_back(process);
        } else {
          ++more_processes;
        }
      }
    }
  }
};

struct RecordWriter::OpenFile {
  std::shared_ptr<const SessionInfo> info;
  durable::AppendFile file;
  Stats stats;
  bool ok = false;  // the marker and file were created
};

void RecordWriter::lostOne() {
  lost_.fetch_add(1);
  metrics::get().record_failures.inc();
}

RecordWriter::RecordWriter(RecordWriterOptions options) : options_(std::move(options)) {}

RecordWriter::~RecordWriter() { stop(); }

std::string RecordWriter::auditHead() const {
  std::lock_guard lk(mu_);
  return head_;
}

void RecordWriter::start(std::vector<SessionClosedHandler> handlers) {
  handlers_ = std::move(handlers);
  std::error_code ec;
  fs::create_directories(options_.storage, ec);
  if (ec)
    throw std::runtime_error("cannot create " + options_.storage.string() + ": " + ec.message());
  fs::create_directories(options_.audit_path.parent_path(), ec);
  if (ec) {
    throw std::runtime_error("cannot create " + options_.audit_path.parent_path().string() + ": " +
                             ec.message());
  }
  recoverAudit();
  recoverSessions();
  next_sync_ = std::chrono::steady_clock::now() + options_.sync_interval;
  thread_ = std::thread([this] { run(); });
}

void RecordWriter::stop() {
  {
    std::lock_guard lk(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void RecordWriter::push(Command&& command, std::uint64_t bytes) {
  {
    std::lock_guard lk(mu_);
    queue_.emplace_back(std::move(command), bytes);
    queued_bytes_ += bytes;
  }
  cv_.notify_one();
}

void RecordWriter::openSession(std::shared_ptr<const SessionInfo> session) {
  push(OpenCmd{std::move(session)}, 0);
}

bool RecordWriter::record(ExchangeRecord&& rec) {
  std::uint64_t bytes = 1024;
  if (rec.request_body && rec.request_body->body) bytes += rec.request_body->body->size();
  if (rec.response_body && rec.response_body->body) bytes += rec.response_body->body->size();
  {
    std::lock_guard lk(mu_);
    if (queued_bytes_ + bytes > options_.max_queue_bytes) {
      lostOne();
      if (!overflow_.exchange(true)) {
        log::error("recorder: the writer cannot keep up (queue over " +
                   std::to_string(options_.max_queue_bytes) + " bytes): dropping records (" +
                   "on_record_failure=" + options_.on_record_failure + ")");
      }
      return false;
    }
    queue_.emplace_back(std::move(rec), bytes);
    queued_bytes_ += bytes;
  }
  cv_.notify_one();
  return true;
}

void RecordWriter::closeSession(std::shared_ptr<const SessionInfo> session,
                                std::chrono::system_clock::time_point ended, std::string reason) {
  push(CloseCmd{std::move(session), ended, std::move(reason)}, 0);
}

void RecordWriter::flush() {
  auto done = std::make_shared<std::promise<void>>();
  auto fut = done->get_future();
  {
    std::lock_guard lk(mu_);
    if (!thread_.joinable() || stopping_) return;
  }
  push(FlushCmd{done}, 0);
  fut.wait();
}

void RecordWriter::run() {
  for (;;) {
    std::deque<std::pair<Command, std::uint64_t>> batch;
    bool stop = false;
    {
      std::unique_lock lk(mu_);
      auto wake = std::min(next_sync_, std::chrono::steady_clock::now() + std::chrono::seconds(1));
      cv_.wait_until(lk, wake, [&] { return !queue_.empty() || stopping_; });
      batch.swap(queue_);
      queued_bytes_ = 0;
      stop = stopping_;
    }
    if (overflow_.exchange(false)) {
      log::warn("recorder: writer queue drained; " + std::to_string(lost_.load()) +
                " records lost so far");
    }
    std::vector<std::shared_ptr<std::promise<void>>> flushes;
    for (auto& [cmd, bytes] : batch) {
      if (auto* f = std::get_if<FlushCmd>(&cmd)) {
        flushes.push_back(f->done);
      } else {
        std::visit(
            [this](auto& c) {
              if constexpr (!std::is_same_v<std::decay_t<decltype(c)>, FlushCmd>) handle(c);
            },
            cmd);
      }
    }
    if (!flushes.empty() || stop || std::chrono::steady_clock::now() >= next_sync_) {
      syncAll();
      next_sync_ = std::chrono::steady_clock::now() + options_.sync_interval;
    }
    for (auto& f : flushes) f->set_value();
    if (stop) {
      std::lock_guard lk(mu_);
      if (queue_.empty()) break;
      continue;
    }
    if (options_.on_tick) options_.on_tick();
  }
  syncAll();
  for (auto& [id, open] : sessions_) {
    log::warn("recorder: session " + id + " still open at writer stop; it is recovered at start");
  }
  sessions_.clear();
  audit_.close();
}

void RecordWriter::fail(const std::string& what, const fs::path& path, std::error_code ec) {
  if (!io_failed_.exchange(true)) {
    log::error("recorder: " + what + " " + path.string() + " failed: " + ec.message() +
               " (on_record_failure=" + options_.on_record_failure + ")");
  }
}

void RecordWriter::handle(OpenCmd& cmd) {
  const SessionInfo& s = *cmd.session;
  auto open = std::make_unique<OpenFile>();
  open->info = cmd.session;
  std::error_code ec;
  fs::create_directories(s.jsonl.parent_path(), ec);
  if (!ec)
    ec = durable::writeFileAtomic(s.open_marker, identityJson(s).dump(2) + "\n", &options_.fault);
  if (!ec) ec = open->file.open(s.jsonl, &options_.fault);
  if (!ec) ec = durable::syncDirectory(s.jsonl.parent_path());
  if (ec) {
    fail("opening session", s.jsonl, ec);
  } else {
    open->ok = true;
  }
  sessions_[s.id] = std::move(open);
}

void RecordWriter::handle(ExchangeRecord& rec) {
  const std::string ts = formatTimestamp(rec.timestamp);
  const std::string session_id = rec.session ? rec.session->id : std::string();

  json audit;
  audit["timestamp"] = ts;
  audit["agent"] = nullIfEmpty<json>(rec.agent);
  audit["spiffe_id"] = nullIfEmpty<json>(rec.spiffe_id);
  audit["auth_method"] = nullIfEmpty<json>(rec.auth_method);
  audit["connection_id"] = rec.connection_id;
  audit["workload"] = {{"kind", rec.key.workload_kind}, {"id", rec.key.workload}};
  audit["process"] = processJson<json>(rec.process.get());
  audit["method"] = rec.method;
  audit["path"] = rec.path;
  audit["query"] = nullIfEmpty<json>(rec.api.query);
  audit["verb"] = rec.api.verb;
  audit["api_group"] = rec.api.api_group;
  audit["namespace"] = nullIfEmpty<json>(rec.api.namespace_name);
  audit["resource"] = nullIfEmpty<json>(rec.api.resource);
  audit["subresource"] = nullIfEmpty<json>(rec.api.subresource);
  audit["name"] = nullIfEmpty<json>(rec.api.name);
  audit["tier"] = static_cast<int>(rec.tier);
  audit["tier_name"] = tierName(rec.tier);
  audit["decision"] = rec.decision;
  audit["status"] = rec.status;
  audit["latency_us"] = rec.latency_us;
  audit["session_id"] = nullIfEmpty<json>(session_id);
  audit["seq"] = rec.session ? json(rec.seq) : json(nullptr);
  audit["error"] = nullIfEmpty<json>(rec.error);
  audit["message"] = nullIfEmpty<json>(rec.message);

  std::string prev;
  {
    std::lock_guard lk(mu_);
    prev = head_;
  }
  std::string text = sealAuditLine(audit, prev);
  std::string audit_hash;
  text += '\n';
  if (auto ec = audit_.append(text)) {
    lostOne();
    fail("appending to audit log", options_.audit_path, ec);
  } else {
    audit_hash = audit["hash"].get<std::string>();
    std::lock_guard lk(mu_);
    head_ = audit_hash;
  }

  if (!rec.session) return;
  auto it = sessions_.find(session_id);
  if (it != sessions_.end() && !it->second->ok && !io_failed_.load()) {
    // Opening failed while the disk was failing; it works again, so open the session now.
    OpenCmd retry{it->second->info};
    handle(retry);
    it = sessions_.find(session_id);
  }
  if (it == sessions_.end() || !it->second->ok) {
    lostOne();
    log::warn("recorder: no open file for session " + session_id + "; exchange " +
              std::to_string(rec.seq) + " kept in the audit log only");
    return;
  }
  OpenFile& open = *it->second;

  // The line is written field by field (no document tree): it carries whole bodies, and this
  // thread writes one for every exchange.
  const ojson process = processJson<ojson>(rec.process.get());
  const auto body = [](const std::optional<BodyCapture::Result>& b) -> const std::string* {
    return b && b->body ? &*b->body : nullptr;
  };
  const std::uint64_t request_size = rec.request_body ? rec.request_body->wire_size : 0;
  const std::uint64_t response_size = rec.response_body ? rec.response_body->wire_size : 0;
  std::string out;
  out.reserve(1024 + (body(rec.request_body) ? body(rec.request_body)->size() : 0) +
              (body(rec.response_body) ? body(rec.response_body)->size() : 0));
  JsonObjectWriter line(out);
  line.str("timestamp", ts).str("method", rec.method).str("path", rec.path);
  line.num("tier", static_cast<int>(rec.tier)).unum("status", rec.status);
  if (const auto* b = body(rec.request_body)) {
    line.str("request_body", *b);
  } else {
    line.null("request_body");
  }
  line.unum("response_body_size", response_size);
  if (const auto* b = body(rec.response_body)) {
    line.str("response_body", *b);
  } else {
    line.null("response_body");
  }
  line.unum("latency_us", rec.latency_us).str("session_id", session_id).unum("seq", rec.seq);
  line.strOrNull("query", rec.api.query).str("tier_name", tierName(rec.tier));
  line.str("verb", rec.api.verb).str("api_group", rec.api.api_group);
  line.str("api_version", rec.api.api_version).strOrNull("namespace", rec.api.namespace_name);
  line.strOrNull("resource", rec.api.resource).strOrNull("subresource", rec.api.subresource);
  line.strOrNull("name", rec.api.name);
  line.boolean("watch", rec.api.watch).boolean("dry_run", rec.api.dry_run);
  putBody(line, "request", rec.request_body);
  putBody(line, "response", rec.response_body);
  line.boolean("upgraded", rec.upgraded).strOrNull("error", rec.error).str("agent", rec.agent);
  line.strOrNull("spiffe_id", rec.spiffe_id).strOrNull("auth_method", rec.auth_method);
  {
    std::string workload;
    JsonObjectWriter w(workload);
    w.str("kind", rec.key.workload_kind).str("id", rec.key.workload).close();
    line.raw("workload", workload);
  }
  line.unum("connection_id", rec.connection_id);
  line.raw("process", process.dump(-1, ' ', false, ojson::error_handler_t::replace));
  line.strOrNull("audit_hash", audit_hash);
  line.close();
  out += '\n';
  if (auto ec = open.file.append(out)) {
    lostOne();
    ++open.stats.lost;
    fail("appending to session", open.info->jsonl, ec);
    return;
  }
  open.stats.sha.update(out);
  auto& m = metrics::get();
  m.bytes_recorded.inc(out.size());
  for (const auto* b : {&rec.request_body, &rec.response_body}) {
    if (*b && (*b)->redacted) m.redactions.inc((*b)->redactions ? (*b)->redactions : 1);
    if (*b && (*b)->truncated) m.truncations.inc();
  }
  open.stats.add(static_cast<int>(rec.tier), request_size, response_size, process, ts);
}

bool RecordWriter::publishManifest(ojson manifest, Stats& stats, const fs::path& jsonl,
                                   const fs::path& path, const fs::path& marker,
                                   const std::string& ended, const std::string& reason) {
  std::error_code ec;
  auto bytes = fs::file_size(jsonl, ec);
  if (ec) bytes = 0;
  ojson tiers = ojson::array();
  int highest = -1;
  for (int t = 0; t < 8; ++t) {
    if (stats.tiers & (1u << t)) {
      tiers.push_back(t);
      highest = t;
    }
  }
  manifest["schema"] = kManifestSchema;
  manifest["ended"] = ended;
  manifest["close_reason"] = reason;
  manifest["request_count"] = stats.requests;
  manifest["tiers_seen"] = tiers;
  manifest["highest_tier"] = highest < 0 ? ojson(nullptr) : ojson(highest);
  manifest["highest_tier_name"] =
      highest < 0 ? ojson(nullptr) : ojson(tierName(static_cast<Tier>(highest)));
  manifest["bytes"] = bytes;
  manifest["request_body_bytes"] = stats.request_bytes;
  manifest["response_body_bytes"] = stats.response_bytes;
  manifest["lost_records"] = stats.lost;
  manifest["processes"] = stats.processes;
  manifest["more_processes"] = stats.more_processes;
  manifest["sha256"] = stats.sha.hex();
  ec = durable::writeFileAtomic(path, manifest.dump(2) + "\n", &options_.fault);
  if (ec) {
    // The marker stays: the next start recovers this session.
    fail("publishing manifest", path, ec);
    return false;
  }
  fs::remove(marker, ec);
  durable::syncDirectory(path.parent_path());
  return true;
}

void RecordWriter::notify(const PublishedSession& closed) {
  for (auto& h : handlers_) {
    try {
      h(closed);
    } catch (const std::exception& e) {
      log::error(std::string("recorder: session-closed handler failed: ") + e.what());
    }
  }
}

void RecordWriter::handle(CloseCmd& cmd) {
  auto it = sessions_.find(cmd.session->id);
  if (it == sessions_.end()) return;
  OpenFile& open = *it->second;
  const SessionInfo& s = *open.info;
  if (open.ok) {
    if (auto ec = open.file.sync()) {
      fail("syncing session", s.jsonl, ec);
    } else if (publishManifest(identityJson(s), open.stats, s.jsonl, s.manifest, s.open_marker,
                               formatTimestamp(cmd.ended), cmd.reason)) {
      open.file.close();
      metrics::get().sessions_closed.inc();
      notify(PublishedSession{s.jsonl, s.manifest, s.key.agent, s.id, s.date, cmd.reason});
    }
  }
  sessions_.erase(it);
}

void RecordWriter::syncAll() {
  if (auto ec = audit_.sync()) fail("syncing audit log", options_.audit_path, ec);
  for (auto& [id, open] : sessions_) {
    if (open->ok) {
      if (auto ec = open->file.sync()) fail("syncing session", open->info->jsonl, ec);
    }
  }
  if (io_failed_.load()) probe();
}

// While failing, checks each sync interval whether both directories take a durable write again.
void RecordWriter::probe() {
  if (audit_.dirty()) return;  // an earlier sync still fails
  for (auto& [id, open] : sessions_) {
    if (open->file.dirty()) return;
  }
  for (const fs::path& dir : {options_.storage, options_.audit_path.parent_path()}) {
    fs::path p = dir / (".kscribe-probe-" + std::to_string(::getpid()));
    if (durable::writeFileAtomic(p, std::string(4096, 'x'), &options_.fault)) return;
    std::error_code ec;
    fs::remove(p, ec);
  }
  io_failed_ = false;
  log::info("recorder: recording works again; " + std::to_string(lost_.load()) +
            " records lost so far");
}

void RecordWriter::recoverAudit() {
  const fs::path& path = options_.audit_path;
  std::error_code ec;
  if (fs::exists(path, ec)) {
    std::uint64_t removed = 0;
    if (auto cut = durable::cutTornTail(path, removed)) {
      throw std::runtime_error("cannot repair audit log " + path.string() + ": " + cut.message());
    }
    if (removed) {
      log::warn("recorder: cut a torn last line (" + std::to_string(removed) +
                " bytes) from audit log " + path.string());
    }
    auto result = verifyAuditFile(path);
    if (!result.ok) {
      throw std::runtime_error("audit log " + path.string() + " line " +
                               std::to_string(result.bad_line) + ": " + result.problem +
                               "; move it aside to start a new chain");
    }
    head_ = result.head;
    log::info("recorder: audit chain " + path.string() + " intact (" +
              std::to_string(result.lines) + " lines), continuing");
  } else {
    head_ = kAuditGenesis;
  }
  if (auto e = audit_.open(path, &options_.fault)) {
    throw std::runtime_error("cannot open audit log " + path.string() + ": " + e.message());
  }
  durable::syncDirectory(path.parent_path());
}

void RecordWriter::recoverSessions() {
  std::error_code ec;
  std::vector<fs::path> markers;
  for (auto it = fs::recursive_directory_iterator(options_.storage, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.ends_with(".tmp")) {
      std::error_code rm;
      fs::remove(it->path(), rm);  // an unpublished write-to-temp
    } else if (name.ends_with(kOpenSuffix)) {
      markers.push_back(it->path());
    }
  }
  for (const fs::path& marker : markers) {
    std::ifstream in(marker);
    ojson base = ojson::parse(in, nullptr, false);
    if (base.is_discarded() || !base.is_object() || !base.contains("session_id")) {
      log::error("recorder: cannot read session marker " + marker.string() + "; left in place");
      continue;
    }
    std::string name = marker.filename().string();
    std::string id = name.substr(0, name.size() - std::string(kOpenSuffix).size());
    fs::path dir = marker.parent_path();
    fs::path jsonl = dir / (id + ".jsonl");
    fs::path manifest = dir / (id + kManifestSuffix);
    if (fs::exists(manifest, ec)) {
      fs::remove(marker, ec);  // closed, but the crash came before the marker went
      continue;
    }
    std::uint64_t removed = 0;
    if (!fs::exists(jsonl, ec)) {
      std::ofstream(jsonl).flush();
    } else if (auto cut = durable::cutTornTail(jsonl, removed)) {
      log::error("recorder: cannot repair " + jsonl.string() + ": " + cut.message());
      continue;
    }
    Stats stats;
    std::ifstream lines(jsonl, std::ios::binary);
    std::string text;
    std::string ended = base.value("started", std::string());
    while (std::getline(lines, text)) {
      stats.sha.update(text);
      stats.sha.update("\n");
      ojson line = ojson::parse(text, nullptr, false);
      if (line.is_discarded() || !line.is_object()) continue;
      auto num = [&](const char* k) {
        auto f = line.find(k);
        return (f != line.end() && f->is_number_unsigned()) ? f->get<std::uint64_t>() : 0;
      };
      std::string ts = line.value("timestamp", std::string());
      stats.add(line.value("tier", -1), num("request_body_size"), num("response_body_size"),
                line.value("process", ojson(nullptr)), ts);
      if (!ts.empty()) ended = ts;
    }
    base["torn_bytes_cut"] = removed;
    if (publishManifest(base, stats, jsonl, manifest, marker, ended, kCloseRecovered)) {
      log::warn("recorder: recovered session " + id + " left open by a crash (" +
                std::to_string(stats.requests) + " records, " + std::to_string(removed) +
                " torn bytes cut)");
      notify(PublishedSession{jsonl, manifest, base.value("agent", std::string()), id,
                              base.value("date", std::string()), kCloseRecovered});
    }
  }
}

}  // namespace kscribe
