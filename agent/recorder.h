#pragma once
// The recorder: the proxy's Tap. Groups exchanges into sessions per identity (idle timeout),
// classifies each request into a tier, captures bodies through BodyCapture (redaction and
// truncation run inline, per chunk), and hands finished exchanges to the RecordWriter, which
// writes the session JSONL and the audit chain off the relay's threads.

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "agent/clock.h"
#include "agent/record_writer.h"
#include "agent/session_key.h"
#include "proxy/tap.h"

namespace kscribe {

struct Config;

struct RecorderOptions {
  bool sessions_enabled = true;  // sessions.api.enabled; the audit log is written either way
  std::filesystem::path storage;
  std::filesystem::path audit_path;
  std::chrono::milliseconds idle_timeout{5 * 60'000};
  std::uint64_t max_body_size = 1'000'000;
  std::string max_body_text = "1MB";
  bool redact_secrets = true;
  std::uint64_t max_decompressed_size = 64'000'000;
  std::chrono::milliseconds sync_interval{1000};
  bool reject_on_failure = true;  // sessions.on_record_failure: reject (503) | forward
  std::uint64_t max_queue_bytes = 64ull << 20;
  durable::FaultHook fault;  // tests only

  static RecorderOptions fromConfig(const Config& config);
};

/// Records every exchange the proxy relays. Thread-safe: the proxy calls it from any strand.
class Recorder : public proxy::Tap {
 public:
  Recorder(RecorderOptions options, Clock& clock);
  ~Recorder() override;

  /// Subscribes to closed sessions (the shipper). Call before start(); runs on the writer thread.
  void onSessionClosed(SessionClosedHandler handler);
  /// Asked before every new exchange (from the proxy's strands: cheap, thread-safe, never
  /// blocking); a Refusal is answered to the client and audited as denied, like a recording
  /// failure. The daemon uses it for a full spool under shipping.on_spool_full: reject. Call
  /// before start().
  using Admission = std::function<std::optional<proxy::Refusal>()>;
  void setAdmission(Admission admission);
  /// Recovers what a crash left open and starts writing. Throws on a broken audit chain.
  void start();
  /// Closes every session, writes and syncs everything, stops the writer. Idempotent.
  void shutdown();

  Begin begin(const proxy::ConnectionInfo& connection, const proxy::RequestHead& request) override;
  void refused(const proxy::ConnectionInfo& connection, const proxy::RequestHead& request,
               unsigned status, std::string_view message) override;

  /// Closes sessions idle for idle_timeout with nothing streaming. The writer thread calls it
  /// about once a second; tests call it after moving their clock.
  void tick();
  /// Waits until everything recorded so far is on disk.
  void flush();

  bool healthy() const { return writer_.healthy(); }
  std::uint64_t lostRecords() const { return writer_.lostRecords(); }
  std::size_t openSessions() const;
  std::string auditHead() const { return writer_.auditHead(); }

 private:
  class Exchange;
  friend class Exchange;
  struct Session {
    std::shared_ptr<const SessionInfo> info;
    std::chrono::steady_clock::time_point last_activity;
    std::chrono::system_clock::time_point last_wall;
    std::uint64_t active = 0;  // exchanges still streaming
    std::uint64_t next_seq = 1;
    bool closed = false;
  };

  std::shared_ptr<Session> sessionFor(const proxy::ConnectionInfo& connection,
                                      const SessionKey& key);
  void closeLocked(std::map<SessionKey, std::shared_ptr<Session>>::iterator it, const char* reason);
  void complete(const std::shared_ptr<Session>& session, ExchangeRecord&& record);
  ExchangeRecord skeleton(const proxy::ConnectionInfo& connection,
                          const proxy::RequestHead& request, SessionKey key);

  RecorderOptions options_;
  Clock& clock_;
  RecordWriter writer_;
  std::vector<SessionClosedHandler> handlers_;
  Admission admission_;

  mutable std::mutex mu_;
  std::map<SessionKey, std::shared_ptr<Session>> sessions_;
  std::mt19937_64 random_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace kscribe
