#pragma once
// The shipping spool: closed sessions wait here, on local disk, until central storage has
// confirmed every file. Nothing leaves the spool before that confirmation; a restart resumes from
// what is on disk. Layout (all under shipping.spool):
//   pending/<seq>-<session id>/{<session id>.jsonl, <session id>.manifest.json, entry.json,
//                                <file>.uploaded ...}
//   incoming/  entries being assembled (renamed into pending/ when complete; leftovers removed)
// The size bound is shipping.spool_max_size; when it is reached, on_spool_full decides:
//   reject      accepting() turns false so the proxy refuses new requests (503); sessions already
//               open still close into the spool, so nothing recorded is ever dropped.
//   drop_oldest the oldest pending entries are deleted (counted and logged) to make room.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

namespace kscribe {

/// What the recorder hands over when a session is closed: its finished files. The recorder calls
/// SessionSink::sessionClosed once per session, after the files are complete and fsynced.
struct ClosedSession {
  std::string session_id;                         // file-name safe ([A-Za-z0-9._-])
  std::string agent;                              // verified agent name
  std::chrono::system_clock::time_point started;  // the object key's date (UTC)
  std::filesystem::path data_file;                // <session id>.jsonl
  std::filesystem::path manifest_file;            // <session id>.manifest.json; may be empty
};

/// Implemented by the shipper; the recorder calls it. Must be cheap: it links the files into
/// the spool and returns. Returns false (with `error`) only if the files could not be spooled.
class SessionSink {
 public:
  virtual ~SessionSink() = default;
  virtual bool sessionClosed(const ClosedSession& session, std::string* error) = 0;
};

/// Where a session's objects go: <prefix>/<cluster>/<node>/<agent>/<YYYY-MM-DD>/<file name>.
struct KeyLayout {
  std::string prefix;
  std::string cluster;
  std::string node;
  std::string key(const std::string& agent, std::chrono::system_clock::time_point started,
                  const std::string& file_name) const;
  /// <prefix>/<cluster>/<node>/audit/head.json
  std::string auditHeadKey() const;
};

struct SpoolFile {
  std::string name;  // file name inside the entry
  std::string key;   // object key
  bool uploaded = false;
};

struct SpoolEntry {
  std::string id;  // directory name: <seq>-<session id>
  std::filesystem::path dir;
  std::string session_id;
  std::string agent;
  std::vector<SpoolFile> files;  // data first, manifest last (a manifest in storage means the
                                 // data before it arrived)
  std::uint64_t bytes = 0;
};

class Spool {
 public:
  Spool(std::filesystem::path dir, std::uint64_t max_bytes, std::string on_full, KeyLayout layout);

  /// Adds a closed session (hard link, or copy + fsync across file systems), atomically.
  bool add(const ClosedSession& session, std::string* error);
  /// Pending entries, oldest first, read from disk.
  std::vector<SpoolEntry> pending() const;
  /// Records that `file` of `entry` is confirmed in storage (survives restarts).
  void markUploaded(const SpoolEntry& entry, const std::string& file);
  /// Removes an entry whose files are all confirmed.
  void remove(const SpoolEntry& entry);

  std::uint64_t bytes() const;
  /// False when on_spool_full is reject and the spool holds spool_max_size or more. Lock-free:
  /// the proxy asks it for every request, and add() holds the lock across fsyncs.
  bool accepting() const { return accepting_.load(std::memory_order_relaxed); }
  std::uint64_t maxBytes() const { return max_bytes_; }
  std::uint64_t dropped() const;
  const std::filesystem::path& dir() const { return dir_; }
  const KeyLayout& layout() const { return layout_; }

 private:
  std::uint64_t scanBytes() const;
  void dropOldestFor(std::uint64_t incoming);
  void updateAcceptingLocked();

  std::filesystem::path dir_;
  std::uint64_t max_bytes_;
  std::string on_full_;
  KeyLayout layout_;
  mutable std::mutex mu_;
  std::uint64_t bytes_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t seq_ = 0;
  std::atomic<bool> accepting_{true};
};

}  // namespace kscribe
