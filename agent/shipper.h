#pragma once
// The shipper: uploads spooled sessions (data, then manifest) to S3-compatible storage and the
// audit chain's head on an interval; deletes a spool entry only after storage confirmed all its
// files. Object keys are deterministic, so re-uploading after a lost acknowledgement or a restart
// overwrites the same objects.
//
// Wiring (for `kscribe serve`): construct it with the config and an S3Client, call start(); hand
// it to the recorder as its SessionSink (sessionClosed); ask accepting() before admitting a new
// request (false: answer 503, the spool is full under on_spool_full: reject); stop() on shutdown.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "agent/config.h"
#include "agent/s3_client.h"
#include "agent/spool.h"

namespace kscribe {

struct ShipperStatus {
  std::size_t pending_entries = 0;
  std::uint64_t spool_bytes = 0;
  std::uint64_t uploaded_objects = 0;
  std::uint64_t uploaded_sessions = 0;
  std::uint64_t failed_uploads = 0;
  std::uint64_t dropped_sessions = 0;
  std::uint64_t audit_heads_uploaded = 0;
  S3Stats s3;
  std::string last_error;  // the last failure, as S3Result::describe() gave it
};

class Shipper : public SessionSink {
 public:
  Shipper(const Config& config, std::unique_ptr<S3Client> client);
  ~Shipper() override;

  bool sessionClosed(const ClosedSession& session, std::string* error) override;

  /// Uploads every pending entry, oldest first; stops at the first failure (storage is down or
  /// refusing: the next pass retries). Returns how many entries remain.
  std::size_t drainOnce();
  /// Uploads the audit chain's last hash if it changed since the last upload.
  bool uploadAuditHead();

  /// Runs drainOnce every upload_interval (or sooner when a session arrives) and the audit head
  /// every audit_head_interval, on a thread of its own.
  void start();
  /// Stops the thread (an upload in flight finishes or times out; retry waits end at once).
  void stop();
  /// At shutdown, once the recorder has closed its sessions: one last pass that uploads what the
  /// spool holds and the audit head, for at most `budget`; then stop(). What is left ships at the
  /// next start.
  void finish(std::chrono::milliseconds budget);

  bool accepting() const { return spool_.accepting(); }
  ShipperStatus status() const;
  Spool& spool() { return spool_; }

 private:
  void run();
  /// Sets the spool gauges and adds new S3 retries to kscribe_upload_retries_total.
  void exportMetrics();

  Config config_;
  std::unique_ptr<S3Client> client_;
  Spool spool_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable wake_;
  bool woken_ = false;
  bool finishing_ = false;  // finish() asked for the last pass (guarded by mu_)
  bool finished_ = false;   // the last pass is over (guarded by mu_)
  std::condition_variable finished_cv_;
  mutable std::mutex status_mu_;
  ShipperStatus status_;
  std::string last_audit_head_;
  std::uint64_t exported_retries_ = 0;  // guarded by status_mu_
};

/// The last line's "hash" of a hash-chained audit log, or "" if the file is missing or empty.
std::string auditChainHead(const std::filesystem::path& audit_file, std::uint64_t* size = nullptr);

}  // namespace kscribe
