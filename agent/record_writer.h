#pragma once
// The JSONL writer: one thread that owns every file the recorder writes (session JSONL, open
// markers, manifests, the audit log). Relay threads hand it records through a bounded queue and
// never wait on disk. It builds the JSON, chains the audit log, syncs every sync_interval and at
// session close, publishes manifests atomically, and on start recovers what a crash left open.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "agent/durable_file.h"
#include "agent/exchange_record.h"

namespace kscribe {

/// A session whose files are complete and published (the shipper's cue).
struct PublishedSession {
  std::filesystem::path jsonl;
  std::filesystem::path manifest;
  std::string agent;
  std::string session_id;
  std::string date;  // UTC YYYY-MM-DD the session started
  std::string close_reason;
};

using SessionClosedHandler = std::function<void(const PublishedSession&)>;

/// Close reasons written into manifests.
inline constexpr const char* kCloseIdle = "idle timeout";
inline constexpr const char* kCloseShutdown = "shutdown";
inline constexpr const char* kCloseRecovered = "recovered after crash";

struct RecordWriterOptions {
  std::filesystem::path storage;     // sessions.api.storage
  std::filesystem::path audit_path;  // audit.path
  std::chrono::milliseconds sync_interval{1000};
  // Records waiting for the disk beyond this are dropped and counted: the relay never waits.
  std::uint64_t max_queue_bytes = 64ull << 20;
  std::string on_record_failure = "reject";  // only for log messages here
  durable::FaultHook fault;                  // tests: simulate ENOSPC/EIO
  std::function<void()> on_tick;             // called on the writer thread at least once a second
};

class RecordWriter {
 public:
  explicit RecordWriter(RecordWriterOptions options);
  ~RecordWriter();
  RecordWriter(const RecordWriter&) = delete;
  RecordWriter& operator=(const RecordWriter&) = delete;

  /// Recovers sessions and the audit chain a crash left behind, then starts the thread.
  /// Throws std::runtime_error if the audit log's chain is broken.
  void start(std::vector<SessionClosedHandler> handlers);
  /// Drains the queue, syncs, closes files and joins the thread.
  void stop();

  void openSession(std::shared_ptr<const SessionInfo> session);
  /// Queues a record; false if it was dropped because the queue is full (counted as lost).
  bool record(ExchangeRecord&& record);
  void closeSession(std::shared_ptr<const SessionInfo> session,
                    std::chrono::system_clock::time_point ended, std::string reason);
  /// Blocks until everything queued before the call is written and synced.
  void flush();

  /// False while recording fails (I/O error, failed sync, queue overflow).
  bool healthy() const { return !io_failed_.load() && !overflow_.load(); }
  /// True while the queue holds more than half of max_queue_bytes: the writer is behind.
  bool congested() const {
    return queued_bytes_now_.load(std::memory_order_relaxed) > options_.max_queue_bytes / 2;
  }
  std::uint64_t lostRecords() const { return lost_.load(); }
  std::string auditHead() const;

 private:
  struct OpenCmd {
    std::shared_ptr<const SessionInfo> session;
  };
  struct CloseCmd {
    std::shared_ptr<const SessionInfo> session;
    std::chrono::system_clock::time_point ended;
    std::string reason;
  };
  struct FlushCmd {
    std::shared_ptr<std::promise<void>> done;
  };
  using Command = std::variant<OpenCmd, ExchangeRecord, CloseCmd, FlushCmd>;

  struct Stats;
  struct OpenFile;

  void push(Command&& command, std::uint64_t bytes);
  void lostOne();
  void run();
  bool napWorthIt() const;  // with mu_ held
  void handle(OpenCmd& cmd);
  void writeRecords(const std::vector<ExchangeRecord*>& recs);
  void appendSessionLine(std::string& out, const ExchangeRecord& rec, const std::string& ts,
                         std::string_view audit_hash);
  const std::string& timestamp(std::chrono::system_clock::time_point t);
  void handle(CloseCmd& cmd);
  void syncAll();
  void probe();
  void fail(const std::string& what, const std::filesystem::path& path, std::error_code ec);
  void recoverAudit();
  void recoverSessions();
  bool publishManifest(nlohmann::ordered_json manifest, Stats& stats,
                       const std::filesystem::path& jsonl, const std::filesystem::path& path,
                       const std::filesystem::path& marker, const std::string& ended,
                       const std::string& reason);
  void notify(const PublishedSession& closed);

  RecordWriterOptions options_;
  std::vector<SessionClosedHandler> handlers_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Command, std::uint64_t>> queue_;
  std::uint64_t queued_bytes_ = 0;
  std::atomic<std::uint64_t> queued_bytes_now_{0};  // queued_bytes_, readable without mu_
  bool stopping_ = false;
  std::thread thread_;

  std::atomic<bool> io_failed_{false};
  std::atomic<bool> overflow_{false};
  std::atomic<std::uint64_t> lost_{0};

  // Writer-thread state.
  durable::AppendFile audit_;
  std::string head_;        // guarded by mu_ for auditHead(); written on the writer thread
  std::string chain_head_;  // head_ as the writer thread knows it, read without the lock
  std::string audit_buf_, session_buf_, scratch_;  // reused between batches
  std::vector<std::string> timestamps_, hashes_;
  std::int64_t ts_second_ = 0;
  std::string ts_text_;
  std::map<std::string, std::unique_ptr<OpenFile>> sessions_;
  std::chrono::steady_clock::time_point next_sync_;
};

/// "2026-02-10T14:30:22.001Z".
std::string formatTimestamp(std::chrono::system_clock::time_point t);

}  // namespace kscribe
