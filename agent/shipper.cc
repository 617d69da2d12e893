#include "agent/shipper.h"

#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "agent/metrics.h"
#include "proxy/log.h"

namespace kscribe {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

KeyLayout layoutFor(const ShippingConfig& s) {
  std::string node = s.node;
  if (node.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    node = host;
  }
  return KeyLayout{s.prefix, s.cluster, node};
}

std::string contentTypeFor(const std::string& name) {
  if (name.ends_with(".jsonl")) return "application/x-ndjson";
  if (name.ends_with(".json")) return "application/json";
  return "application/octet-stream";
}

}  // namespace

std::string auditChainHead(const fs::path& file, std::uint64_t* size_out) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size_out) *size_out = static_cast<std::uint64_t>(size);
  // The last complete line is within the tail; audit lines are small.
  const std::streamoff tail = std::min<std::streamoff>(size, 1 << 20);
  std::string buf(static_cast<std::size_t>(tail), '\0');
  in.seekg(size - tail);
  in.read(buf.data(), tail);
  while (!buf.empty() && buf.back() == '\n') buf.pop_back();
  auto start = buf.rfind('\n');
  std::string line = start == std::string::npos ? buf : buf.substr(start + 1);
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("hash") || !j["hash"].is_string())
    return "";
  return j["hash"].get<std::string>();
}

Shipper::Shipper(const Config& config, std::unique_ptr<S3Client> client)
    : config_(config),
      client_(std::move(client)),
      spool_(config.shipping.spool, config.shipping.spool_max_size.bytes,
             config.shipping.on_spool_full, layoutFor(config.shipping)) {}

Shipper::~Shipper() { stop(); }

void Shipper::exportMetrics() {
  auto& m = metrics::get();
  m.spool_bytes.set(static_cast<std::int64_t>(spool_.bytes()));
  m.spool_accepting.set(spool_.accepting() ? 1 : 0);
  // The client counts retries; the metric is a counter: add what is new since the last export.
  const std::uint64_t retries = client_->stats().retries;
  std::lock_guard lock(status_mu_);
  if (retries > exported_retries_) m.upload_retries.inc(retries - exported_retries_);
  exported_retries_ = retries;
}

bool Shipper::sessionClosed(const ClosedSession& session, std::string* error) {
  const bool added = spool_.add(session, error);
  exportMetrics();
  if (!added) return false;
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  wake_.notify_all();
  return true;
}

std::size_t Shipper::drainOnce() {
  auto entries = spool_.pending();
  std::size_t remaining = entries.size();
  for (auto& e : entries) {
    if (stopping_) break;
    bool ok = true;
    for (auto& f : e.files) {
      if (f.uploaded) continue;
      S3Result r = client_->putFile(f.key, e.dir / f.name, contentTypeFor(f.name));
      if (!r.ok) {
        metrics::get().upload_failure.inc();
        std::lock_guard lock(status_mu_);
        ++status_.failed_uploads;
        status_.last_error = r.describe();
        log::error("shipper: upload of " + f.key + " failed: " + r.describe() +
                   "; kept in the spool");
        ok = false;
        break;
      }
      spool_.markUploaded(e, f.name);
      f.uploaded = true;
      metrics::get().upload_success.inc();
      std::lock_guard lock(status_mu_);
      ++status_.uploaded_objects;
    }
    if (!ok) break;  // storage is failing: keep order, try again next pass
    spool_.remove(e);
    --remaining;
    std::lock_guard lock(status_mu_);
    ++status_.uploaded_sessions;
  }
  exportMetrics();
  return remaining;
}

bool Shipper::uploadAuditHead() {
  std::uint64_t size = 0;
  const std::string head = auditChainHead(config_.audit.path, &size);
  if (head.empty() || head == last_audit_head_) return true;
  char now[32];
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
  json j{{"schema", "kscribe.audit-head/v1"},  // schemas/audit-head.schema.json
         {"cluster", spool_.layout().cluster},
         {"node", spool_.layout().node},
         {"hash", head},
         {"audit_file_size", size},
         {"uploaded_at", now}};
  S3Result r =
      client_->putObject(spool_.layout().auditHeadKey(), j.dump() + "\n", "application/json");
  if (!r.ok) {
    metrics::get().upload_failure.inc();
    std::lock_guard lock(status_mu_);
    status_.last_error = r.describe();
    log::error("shipper: audit head upload failed: " + r.describe());
    return false;
  }
  last_audit_head_ = head;
  metrics::get().upload_success.inc();
  std::lock_guard lock(status_mu_);
  ++status_.audit_heads_uploaded;
  return true;
}

void Shipper::start() {
  if (thread_.joinable()) return;
  exportMetrics();
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void Shipper::stop() {
  stopping_ = true;
  client_->cancel();
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Shipper::finish(std::chrono::milliseconds budget) {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    finishing_ = true;
    woken_ = true;
  }
  wake_.notify_all();
  bool done = false;
  {
    std::unique_lock lock(mu_);
    done = finished_cv_.wait_for(lock, budget, [this] { return finished_; });
  }
  if (!done) {
    log::warn("shipper: the final upload did not end within shipping.final_upload_timeout; " +
              std::to_string(spool_.pending().size()) + " spooled sessions ship at the next start");
  }
  stop();
}

void Shipper::run() {
  using clock = std::chrono::steady_clock;
  auto next_head = clock::now();
  while (!stopping_) {
    bool last = false;
    {
      std::lock_guard lock(mu_);
      last = finishing_;
    }
    const std::size_t left = drainOnce();
    if (last || clock::now() >= next_head) {
      uploadAuditHead();
      next_head = clock::now() + config_.shipping.audit_head_interval;
    }
    std::unique_lock lock(mu_);
    if (last) {
      log::info("shipper: final upload done; " + std::to_string(left) +
                " spooled sessions left for the next start");
      finished_ = true;
      finished_cv_.notify_all();
      return;
    }
    wake_.wait_for(lock, config_.shipping.upload_interval,
                   [this] { return woken_ || stopping_.load(); });
    woken_ = false;
  }
}

ShipperStatus Shipper::status() const {
  std::lock_guard lock(status_mu_);
  ShipperStatus s = status_;
  s.pending_entries = spool_.pending().size();
  s.spool_bytes = spool_.bytes();
  s.dropped_sessions = spool_.dropped();
  s.s3 = client_->stats();
  return s;
}

}  // namespace kscribe
