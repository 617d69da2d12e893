#include "agent/recorder.h"

#include <time.h>

#include <charconv>
#include <optional>

#include "agent/api_request.h"
#include "agent/body_capture.h"
#include "agent/config.h"
#include "agent/metrics.h"
#include "agent/tier.h"
#include "proxy/log.h"

namespace kscribe {
namespace {

// How long a request waits before asking again while the writer is behind.
constexpr std::chrono::milliseconds kBusyRetry{5};

constexpr const char* kRefusalMessage =
    "kscribe cannot record requests right now, and it does not forward what it cannot record; "
    "try again later";

std::string utcStamp(std::chrono::system_clock::time_point t, const char* format) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

// Agent names come from certificates and config; keep file names to a safe alphabet.
std::string fileSafe(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 48)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    out += ok ? c : '_';
  }
  if (out.empty() || out[0] == '.') out.insert(0, "agent");
  return out;
}

// Content-Length as sent; nullopt when absent or not a plain number (it only sizes buffers).
std::optional<std::uint64_t> contentLength(std::string_view v) {
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size()) return std::nullopt;
  return n;
}

}  // namespace

RecorderOptions RecorderOptions::fromConfig(const Config& config) {
  RecorderOptions o;
  o.sessions_enabled = config.sessions.api.enabled;
  o.storage = config.sessions.api.storage;
  o.audit_path = config.audit.path;
  o.idle_timeout = config.sessions.api.idle_timeout;
  o.max_body_size = config.sessions.api.max_body_size.bytes;
  o.max_body_text = config.sessions.api.max_body_size.text;
  o.redact_secrets = config.sessions.api.redact_secrets;
  o.max_decompressed_size = config.sessions.max_decompressed_size.bytes;
  o.sync_interval = config.sessions.sync_interval;
  o.reject_on_failure = config.sessions.on_record_failure != "forward";
  return o;
}

/// One exchange in flight: feeds body chunks to BodyCapture on the relay's strand and hands the
/// finished record to the recorder exactly once (end, error, or destruction).
class Recorder::Exchange : public proxy::ExchangeTap {
 public:
  Exchange(Recorder& recorder, std::shared_ptr<Session> session, ExchangeRecord record,
           const proxy::RequestHead& head)
      : recorder_(recorder),
        session_(std::move(session)),
        record_(std::move(record)),
        started_(recorder.clock_.now()),
        upgrade_(head.upgrade) {
    // The request's capture is made when its first chunk comes: most requests have no body.
    if (capturing()) {
      request_type_ = head.header("Content-Type");
      request_encoding_ = head.header("Content-Encoding");
      request_length_ = head.header("Content-Length");
    }
  }

  ~Exchange() override {
    if (!done_) finish("the relay dropped the exchange before it ended");
  }

  void requestBody(std::span<const char> chunk) override {
    if (!capturing()) return;
    if (!request_) {
      request_.emplace(options(request_type_, request_encoding_, request_length_, true, 0));
    }
    request_->feed(chunk);
  }

  void responseHead(const proxy::ResponseHead& head) override {
    record_.status = head.status;
    if (capturing()) {
      response_.emplace(options(head.header("Content-Type"), head.header("Content-Encoding"),
                                head.header("Content-Length"), false, head.status));
    }
  }

  void responseBody(std::span<const char> chunk) override {
    if (response_) response_->feed(chunk);
  }

  void upgraded() override { record_.upgraded = true; }
  void end() override { finish({}); }
  void error(std::string_view what) override { finish(what); }

 private:
  // Bodies are kept for session files only: without a session (sessions.api.enabled: false)
  // the audit line needs none, so nothing is captured; nor for an upgrade's tunnel.
  bool capturing() const { return !upgrade_ && session_ != nullptr; }

  BodyOptions options(std::string_view content_type, std::string_view encoding,
                      std::string_view length, bool is_request, unsigned status) const {
    const RecorderOptions& o = recorder_.options_;
    return BodyOptions{o.max_body_size,
                       o.max_body_text,
                       o.redact_secrets,
                       o.max_decompressed_size,
                       std::string(content_type),
                       std::string(encoding),
                       &record_.api,
                       is_request,
                       status,
                       contentLength(length)};
  }

  void finish(std::string_view error) {
    done_ = true;
    record_.error = std::string(error);
    try {
      if (request_) {
        record_.request_body = request_->finish();
      } else if (capturing()) {
        record_.request_body.emplace().content_type = std::move(request_type_);  // no body
      }
      if (response_) record_.response_body = response_->finish();
    } catch (const std::exception& e) {
      // Keep the exchange on record without bodies rather than lose it.
      record_.request_body.reset();
      record_.response_body.reset();
      record_.error +=
          std::string(record_.error.empty() ? "" : "; ") + "body capture failed: " + e.what();
    }
    record_.latency_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(recorder_.clock_.now() - started_)
            .count());
    recorder_.complete(session_, std::move(record_));
  }

  Recorder& recorder_;
  std::shared_ptr<Session> session_;
  ExchangeRecord record_;
  std::chrono::steady_clock::time_point started_;
  bool upgrade_;
  bool done_ = false;
  std::string request_type_, request_encoding_, request_length_;
  std::optional<BodyCapture> request_, response_;
};

Recorder::Recorder(RecorderOptions options, Clock& clock)
    : options_(std::move(options)),
      clock_(clock),
      writer_(RecordWriterOptions{
          options_.storage, options_.audit_path, options_.sync_interval, options_.max_queue_bytes,
          options_.reject_on_failure ? "reject" : "forward", options_.fault, [this] { tick(); }}),
      random_(std::random_device{}()) {}

Recorder::~Recorder() { shutdown(); }

void Recorder::setAdmission(Admission admission) { admission_ = std::move(admission); }

void Recorder::onSessionClosed(SessionClosedHandler handler) {
  handlers_.push_back(std::move(handler));
}

void Recorder::start() {
  writer_.start(handlers_);
  std::lock_guard lk(mu_);
  started_ = true;
}

void Recorder::shutdown() {
  {
    std::lock_guard lk(mu_);
    if (!started_ || stopped_) return;
    stopped_ = true;
    while (!sessions_.empty()) closeLocked(sessions_.begin(), kCloseShutdown);
  }
  writer_.stop();
}

std::size_t Recorder::openSessions() const {
  std::lock_guard lk(mu_);
  return sessions_.size();
}

void Recorder::flush() { writer_.flush(); }

ExchangeRecord Recorder::skeleton(const proxy::ConnectionInfo& connection,
                                  const proxy::RequestHead& request, SessionKey key) {
  ExchangeRecord rec;
  rec.connection_id = connection.id;
  rec.agent = connection.agent;
  rec.spiffe_id = connection.spiffe_id;
  rec.auth_method = connection.auth_method;
  rec.key = std::move(key);
  rec.process = connection.attribution;
  rec.timestamp = clock_.wallNow();
  rec.method = request.method;
  std::string_view target = request.target;
  rec.path = std::string(target.substr(0, target.find('?')));
  rec.api = parseApiRequest(request.method, request.target);
  rec.tier = classify(request.method, rec.api, request.upgrade, request.header("Content-Type"));
  return rec;
}

void Recorder::closeLocked(std::map<SessionKey, std::shared_ptr<Session>>::iterator it,
                           const char* reason) {
  Session& s = *it->second;
  s.closed = true;
  metrics::get().sessions_open.dec();
  writer_.closeSession(s.info, s.last_wall, reason);
  sessions_.erase(it);
}

std::shared_ptr<Recorder::Session> Recorder::sessionFor(const proxy::ConnectionInfo& connection,
                                                        const SessionKey& key) {
  const auto now = clock_.now();
  auto it = sessions_.find(key);
  if (it != sessions_.end()) {
    Session& s = *it->second;
    // Decided under the lock: a request either extends a live session or, if the idle timeout
    // has passed with nothing streaming, closes it and opens the next one, never both.
    if (s.active > 0 || now - s.last_activity < options_.idle_timeout) return it->second;
    closeLocked(it, kCloseIdle);
  }
  auto info = std::make_shared<SessionInfo>();
  info->key = key;
  info->spiffe_id = connection.spiffe_id;
  info->auth_method = connection.auth_method;
  info->verified = connection.identity;
  info->started = clock_.wallNow();
  info->date = utcStamp(info->started, "%Y-%m-%d");
  char rnd[9];
  std::snprintf(rnd, sizeof rnd, "%08x", static_cast<unsigned>(random_() & 0xffffffffu));
  info->id = utcStamp(info->started, "%Y%m%dT%H%M%SZ") + "-" + fileSafe(key.agent) + "-" + rnd;
  info->process = connection.attribution;
  auto dir = options_.storage / info->date;
  info->jsonl = dir / (info->id + ".jsonl");
  info->manifest = dir / (info->id + ".manifest.json");
  info->open_marker = dir / (info->id + ".open.json");
  auto session = std::make_shared<Session>();
  session->info = info;
  session->last_activity = now;
  session->last_wall = info->started;
  sessions_.emplace(key, session);
  metrics::get().sessions_open.inc();
  writer_.openSession(info);
  return session;
}

proxy::Tap::Begin Recorder::begin(const proxy::ConnectionInfo& connection,
                                  const proxy::RequestHead& request) {
  Begin begin;
  if (options_.reject_on_failure && writer_.congested()) {
    // The writer is behind: slow the agents down rather than lose records or refuse requests.
    metrics::get().recorder_waits.inc();
    begin.retry_after = kBusyRetry;
    return begin;
  }
  ExchangeRecord rec = skeleton(connection, request, sessionKeyFor(connection));
  std::shared_ptr<Session> session;
  std::optional<proxy::Refusal> refusal;
  if (admission_) refusal = admission_();
  {
    std::lock_guard lk(mu_);
    if (refusal) {
      // Not admitted (the spool is full): refused before anything is forwarded, and audited.
      rec.decision = "denied";
      rec.status = refusal->status;
      rec.message = refusal->message;
      if (started_ && !stopped_) writer_.record(std::move(rec));
      begin.refusal = std::move(refusal);
      return begin;
    }
    const bool can_record = started_ && !stopped_ && writer_.healthy();
    if (!can_record && (options_.reject_on_failure || stopped_ || !started_)) {
      begin.refusal = proxy::Refusal{503, "ServiceUnavailable", kRefusalMessage};
      rec.decision = "denied";
      rec.status = 503;
      rec.message = "recording unavailable";
      if (started_ && !stopped_) writer_.record(std::move(rec));
      return begin;
    }
    if (options_.sessions_enabled) {
      session = sessionFor(connection, rec.key);
      rec.session = session->info;
      rec.seq = session->next_seq++;
      ++session->active;
      session->last_activity = clock_.now();
      session->last_wall = rec.timestamp;
    }
  }
  begin.tap = std::make_unique<Exchange>(*this, std::move(session), std::move(rec), request);
  return begin;
}

void Recorder::refused(const proxy::ConnectionInfo& connection, const proxy::RequestHead& request,
                       unsigned status, std::string_view message) {
  ExchangeRecord rec = skeleton(connection, request, sessionKeyFor(connection));
  rec.decision = "denied";
  rec.status = status;
  rec.message = std::string(message);
  std::lock_guard lk(mu_);
  if (started_ && !stopped_) writer_.record(std::move(rec));
}

void Recorder::complete(const std::shared_ptr<Session>& session, ExchangeRecord&& record) {
  // Under the lock so a record is queued before its session's close, never after.
  std::lock_guard lk(mu_);
  if (session) {
    --session->active;
    session->last_activity = clock_.now();
    session->last_wall = clock_.wallNow();
    if (session->closed) {
      log::warn("recorder: exchange " + std::to_string(record.seq) + " of session " +
                session->info->id + " ended after its session closed (shutdown)");
    }
  }
  if (stopped_) {
    log::warn("recorder: exchange ended after shutdown; not recorded");
    return;
  }
  writer_.record(std::move(record));
}

void Recorder::tick() {
  std::lock_guard lk(mu_);
  const auto now = clock_.now();
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto next = std::next(it);
    const Session& s = *it->second;
    if (s.active == 0 && now - s.last_activity >= options_.idle_timeout) {
      closeLocked(it, kCloseIdle);
    }
    it = next;
  }
}

}  // namespace kscribe
