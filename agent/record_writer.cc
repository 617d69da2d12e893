#include "agent/record_writer.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "agent/audit_chain.h"
#include "agent/audit_line.h"
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
// The records written with one append per file; bounds the writer's buffers.
constexpr std::size_t kMaxGroupRecords = 1024;
constexpr std::uint64_t kMaxGroupBytes = 4u << 20;
// A wake-up that finds fewer records than this waits kNap for more (see run()). Measured with
// recorder_bench (one relay thread, 4 KB bodies): without it nearly every record woke the writer
// on its own (~20k write() and futex calls per 20k records); with it ~1k of each, and the
// writer's CPU per exchange falls by about 15%.
constexpr std::size_t kNapBelow = 16;
constexpr std::chrono::microseconds kNap{1000};

template <class J>
J nullIfEmpty(const std::string& s) {
  return s.empty() ? J(nullptr) : J(s);
}

// The body fields of one side, named once: every session line writes both sides.
struct BodyKeys {
  std::string_view size, encoding, content_type, truncated, redacted, redactions, omitted;
};
constexpr BodyKeys kRequestKeys{"request_body_size",     "request_body_encoding",
                                "request_content_type",  "request_body_truncated",
                                "request_body_redacted", "request_body_redactions",
                                "request_body_omitted"};
constexpr BodyKeys kResponseKeys{"response_body_size",     "response_body_encoding",
                                 "response_content_type",  "response_body_truncated",
                                 "response_body_redacted", "response_body_redactions",
                                 "response_body_omitted"};

void putBody(JsonObjectWriter& line, const BodyKeys& k,
             const std::optional<BodyCapture::Result>& b) {
  const bool has = b && b->body.has_value();
  line.unum(k.size, b ? b->wire_size : 0);
  if (has) {
    line.str(k.encoding, b->encoding);
  } else {
    line.null(k.encoding);
  }
  line.strOrNull(k.content_type, b ? std::string_view(b->content_type) : "");
  line.boolean(k.truncated, b && b->truncated);
  line.boolean(k.redacted, b && b->redacted);
  line.unum(k.redactions, b ? b->redactions : 0);
  line.strOrNull(k.omitted, b ? std::string_view(b->omitted_reason) : "");
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
  m["process"] = processObject(s.process.get());
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

const std::string& RecordWriter::timestamp(std::chrono::system_clock::time_point t) {
  // formatTimestamp() with the seconds' text kept: most records share their second.
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::int64_t secs = ms / 1000;
  if (ms % 1000 < 0) --secs;
  if (secs != ts_second_ || ts_text_.empty()) {
    ts_text_ = formatTimestamp(t);
    ts_second_ = secs;
    return ts_text_;
  }
  const int milli = static_cast<int>(((ms % 1000) + 1000) % 1000);
  char* d = ts_text_.data() + ts_text_.size() - 4;  // "SSS" before the 'Z'
  d[0] = static_cast<char>('0' + milli / 100);
  d[1] = static_cast<char>('0' + milli / 10 % 10);
  d[2] = static_cast<char>('0' + milli % 10);
  return ts_text_;
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
    count(tier, req, resp, timestamp);
    if (process.is_object() && process.contains("tgid")) {
      seen(process["tgid"].get<std::uint64_t>(), process["start_time"].get<std::uint64_t>(),
           [&] { return process; });
    }
  }

  // The live path: the process object is built only for a process not seen before.
  void add(int tier, std::uint64_t req, std::uint64_t resp, const proxy::Attribution* process,
           const std::string& timestamp) {
    count(tier, req, resp, timestamp);
    if (process && process->status == proxy::Attribution::Status::kAttributed) {
      seen(process->tgid, process->start_time, [&] { return processObject(process); });
    }
  }

 private:
  void count(int tier, std::uint64_t req, std::uint64_t resp, const std::string& timestamp) {
    ++requests;
    request_bytes += req;
    response_bytes += resp;
    if (tier >= 0 && tier < 8) tiers |= 1u << tier;
    last_timestamp = timestamp;
  }

  template <class Make>
  void seen(std::uint64_t tgid, std::uint64_t start_time, const Make& make) {
    if (!seen_processes.emplace(tgid, start_time).second) return;
    if (processes.size() < kMaxManifestProcesses) {
      processes.push_back(make());
    } else {
      ++more_processes;
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
  bool was_empty = false;
  {
    std::lock_guard lk(mu_);
    was_empty = queue_.empty();
    queue_.emplace_back(std::move(command), bytes);
    queued_bytes_ += bytes;
    queued_bytes_now_.store(queued_bytes_, std::memory_order_relaxed);
  }
  // The writer waits only on an empty queue, and rechecks it before waiting: a push onto a
  // non-empty queue needs no wake-up (most pushes, under load).
  if (was_empty) cv_.notify_one();
}

void RecordWriter::openSession(std::shared_ptr<const SessionInfo> session) {
  push(OpenCmd{std::move(session)}, 0);
}

bool RecordWriter::record(ExchangeRecord&& rec) {
  std::uint64_t bytes = 1024;
  if (rec.request_body && rec.request_body->body) bytes += rec.request_body->body->size();
  if (rec.response_body && rec.response_body->body) bytes += rec.response_body->body->size();
  bool was_empty = false;
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
    was_empty = queue_.empty();
    queue_.emplace_back(std::move(rec), bytes);
    queued_bytes_ += bytes;
    queued_bytes_now_.store(queued_bytes_, std::memory_order_relaxed);
  }
  if (was_empty) cv_.notify_one();  // as in push()
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

bool RecordWriter::napWorthIt() const {
  if (stopping_ || queue_.empty() || queue_.size() >= kNapBelow) return false;
  for (const auto& [cmd, bytes] : queue_) {
    if (std::holds_alternative<FlushCmd>(cmd)) return false;
  }
  return true;
}

void RecordWriter::run() {
  for (;;) {
    std::deque<std::pair<Command, std::uint64_t>> batch;
    bool stop = false;
    {
      std::unique_lock lk(mu_);
      auto wake = std::min(next_sync_, std::chrono::steady_clock::now() + std::chrono::seconds(1));
      cv_.wait_until(lk, wake, [&] { return !queue_.empty() || stopping_; });
      if (napWorthIt()) {
        // A few records woke us: let more arrive so they share the appends. Records are
        // asynchronous, so no request waits for this; a queued flush or stop skips the nap, one
        // arriving during it waits at most kNap.
        lk.unlock();
        std::this_thread::sleep_for(kNap);
        lk.lock();
      }
      batch.swap(queue_);
      queued_bytes_ = 0;
      queued_bytes_now_.store(0, std::memory_order_relaxed);
      stop = stopping_;
    }
    if (overflow_.exchange(false)) {
      log::warn("recorder: writer queue drained; " + std::to_string(lost_.load()) +
                " records lost so far");
    }
    std::vector<std::shared_ptr<std::promise<void>>> flushes;
    std::vector<ExchangeRecord*> group;
    std::uint64_t group_bytes = 0;
    for (auto& [cmd, bytes] : batch) {
      if (auto* rec = std::get_if<ExchangeRecord>(&cmd)) {
        group.push_back(rec);
        group_bytes += bytes;
        if (group.size() < kMaxGroupRecords && group_bytes < kMaxGroupBytes) continue;
      }
      writeRecords(group);  // before an open or close of a session, and at the bounds
      group.clear();
      group_bytes = 0;
      if (auto* f = std::get_if<FlushCmd>(&cmd)) {
        flushes.push_back(f->done);
      } else if (auto* o = std::get_if<OpenCmd>(&cmd)) {
        handle(*o);
      } else if (auto* c = std::get_if<CloseCmd>(&cmd)) {
        handle(*c);
      }
    }
    writeRecords(group);
    batch.clear();  // the records are freed here, before the sync
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

// The session line, written field by field (no document tree): it carries whole bodies, and this
// thread writes one for every exchange.
void RecordWriter::appendSessionLine(std::string& out, const ExchangeRecord& rec,
                                     const std::string& ts, std::string_view audit_hash) {
  const auto body = [](const std::optional<BodyCapture::Result>& b) -> const std::string* {
    return b && b->body ? &*b->body : nullptr;
  };
  const std::uint64_t response_size = rec.response_body ? rec.response_body->wire_size : 0;
  const std::string& session_id = rec.session->id;
  out.reserve(out.size() + 1024 +
              (body(rec.request_body) ? body(rec.request_body)->size() * 5 / 4 : 0) +
              (body(rec.response_body) ? body(rec.response_body)->size() * 5 / 4 : 0));
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
  putBody(line, kRequestKeys, rec.request_body);
  putBody(line, kResponseKeys, rec.response_body);
  line.boolean("upgraded", rec.upgraded).strOrNull("error", rec.error).str("agent", rec.agent);
  line.strOrNull("spiffe_id", rec.spiffe_id).strOrNull("auth_method", rec.auth_method);
  line.raw("workload", "");  // the key; the object is written after it
  {
    JsonObjectWriter w(out);
    w.str("kind", rec.key.workload_kind).str("id", rec.key.workload).close();
  }
  line.unum("connection_id", rec.connection_id);
  line.raw("process", "");  // likewise
  appendProcessJson(out, rec.process.get());
  line.strOrNull("audit_hash", audit_hash);
  line.close();
  out += '\n';
}

// A run of exchanges in queue order: their audit lines go out in one append, then each session
// file's lines in one append. An append either lands whole or is cut back (AppendFile), so a
// failed one loses exactly its records, and the chain continues from the last line on disk.
void RecordWriter::writeRecords(const std::vector<ExchangeRecord*>& recs) {
  if (recs.empty()) return;
  timestamps_.resize(recs.size());
  hashes_.resize(recs.size());
  audit_buf_.clear();
  std::string prev = chain_head_;
  for (std::size_t i = 0; i < recs.size(); ++i) {
    timestamps_[i] = timestamp(recs[i]->timestamp);
    hashes_[i] = appendAuditLine(audit_buf_, *recs[i], timestamps_[i], prev, scratch_);
    audit_buf_ += '\n';
    prev = hashes_[i];
  }
  bool audited = true;
  if (auto ec = audit_.append(audit_buf_)) {
    audited = false;
    for (std::size_t i = 0; i < recs.size(); ++i) lostOne();
    fail("appending to audit log", options_.audit_path, ec);
  } else {
    chain_head_ = std::move(prev);
    std::lock_guard lk(mu_);
    head_ = chain_head_;
  }
  if (audit_buf_.capacity() > kMaxGroupBytes) std::string().swap(audit_buf_);

  // Each exchange's open session file, in queue order.
  std::vector<std::pair<OpenFile*, std::size_t>> lines;
  for (std::size_t i = 0; i < recs.size(); ++i) {
    const ExchangeRecord& rec = *recs[i];
    if (!rec.session) continue;
    const std::string& session_id = rec.session->id;
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
      continue;
    }
    lines.emplace_back(it->second.get(), i);
  }
  // Grouped by file, each file's lines in their order.
  std::stable_sort(lines.begin(), lines.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  auto& m = metrics::get();
  for (std::size_t from = 0; from < lines.size();) {
    OpenFile& open = *lines[from].first;
    std::size_t to = from;
    session_buf_.clear();
    for (; to < lines.size() && lines[to].first == &open; ++to) {
      const std::size_t i = lines[to].second;
      appendSessionLine(session_buf_, *recs[i], timestamps_[i],
                        audited ? std::string_view(hashes_[i]) : std::string_view());
    }
    if (auto ec = open.file.append(session_buf_)) {
      for (std::size_t k = from; k < to; ++k) {
        lostOne();
        ++open.stats.lost;
      }
      fail("appending to session", open.info->jsonl, ec);
    } else {
      open.stats.sha.update(session_buf_);
      m.bytes_recorded.inc(session_buf_.size());
      for (std::size_t k = from; k < to; ++k) {
        const std::size_t i = lines[k].second;
        const ExchangeRecord& rec = *recs[i];
        for (const auto* b : {&rec.request_body, &rec.response_body}) {
          if (*b && (*b)->redacted) m.redactions.inc((*b)->redactions ? (*b)->redactions : 1);
          if (*b && (*b)->truncated) m.truncations.inc();
        }
        open.stats.add(static_cast<int>(rec.tier),
                       rec.request_body ? rec.request_body->wire_size : 0,
                       rec.response_body ? rec.response_body->wire_size : 0, rec.process.get(),
                       timestamps_[i]);
      }
    }
    from = to;
  }
  if (session_buf_.capacity() > kMaxGroupBytes) std::string().swap(session_buf_);
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
    chain_head_ = head_;
    log::info("recorder: audit chain " + path.string() + " intact (" +
              std::to_string(result.lines) + " lines), continuing");
  } else {
    head_ = kAuditGenesis;
    chain_head_ = head_;
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
