#pragma once
// Reading recorded sessions back from sessions.api.storage, for the viewer (`kscribe sessions`).
// Layout, as the recorder writes it: <storage>/<YYYY-MM-DD>/<id>.jsonl, with <id>.open.json while
// the session is open and <id>.manifest.json once it is closed. With shipping on, a closed session
// waits in the shipper's spool (<spool>/pending/<seq>-<id>/, see agent/spool.h) until central
// storage confirmed it: closed while there, shipped once it is gone.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kscribe {

/// One session as the list shows it.
struct SessionSummary {
  std::string id;
  std::string agent;
  std::string workload_kind;  // pod | container | cgroup | host
  std::string workload;
  std::string started;  // RFC 3339 UTC with milliseconds, as recorded
  std::string ended;    // empty while open: the last request's time is in `last_activity`
  std::string last_activity;
  std::int64_t duration_ms = 0;
  std::uint64_t requests = 0;
  int highest_tier = -1;  // -1: no request
  std::uint64_t bytes = 0;
  std::string status;  // open | closed | shipped
  std::string close_reason;
  std::filesystem::path jsonl, manifest;
  nlohmann::json identity;  // the manifest (or open marker) as written
};

/// A session could not be found, or a prefix matched several.
class SessionLookupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Calls `progress(done, total)` as bytes of a file are read; may be empty.
using Progress = std::function<void(std::uint64_t done, std::uint64_t total)>;

/// Where sessions are and what the shipper has left to upload.
struct SessionDirs {
  std::filesystem::path storage;  // sessions.api.storage
  bool shipping = false;          // shipping.enabled: closed sessions not in the spool are shipped
  std::filesystem::path spool;    // shipping.spool
};

/// Every session (open, closed and shipped), newest first.
std::vector<SessionSummary> listSessions(const SessionDirs& dirs);

/// The session whose id is `id_or_prefix` or starts with it. Throws SessionLookupError.
SessionSummary findSession(const SessionDirs& dirs, std::string_view id_or_prefix);

/// The session's records in file order. A torn last line (a crash mid-write) is skipped; a bad
/// line elsewhere throws std::runtime_error naming the line.
std::vector<nlohmann::json> readRecords(const std::filesystem::path& jsonl,
                                        const Progress& progress = {});

/// "2026-02-10T14:30:22.001Z" (also "+01:00" offsets, fractions optional) -> time point.
std::optional<std::chrono::system_clock::time_point> parseRfc3339(std::string_view text);

/// "OBSERVE".."BREAK-GLASS" for 0..4, "-" otherwise.
const char* tierLabel(int tier);
/// A tier from "0".."4" or a tier name (case-insensitive); std::nullopt if neither.
std::optional<int> parseTier(std::string_view text);

/// "512B", "4.7KB", "1.2MB" (powers of 1000, as the config writes sizes).
std::string humanBytes(std::uint64_t bytes);
/// "850ms", "12.3s", "4m05s", "2h03m".
std::string humanDuration(std::int64_t ms);
/// "950µs"-free ASCII: "950us", "1.2ms", "3.40s".
std::string humanLatency(std::uint64_t us);

}  // namespace kscribe
