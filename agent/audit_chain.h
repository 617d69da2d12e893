#pragma once
// The hash-chained audit log format: each line is the canonical JSON of an object (keys sorted, no
// whitespace, non-ASCII escaped) carrying `prev_hash` (the previous line's hash, "genesis" for the
// first) and `hash`, the hex SHA-256 of the same canonical JSON with `hash` set to "".
// Canonical form makes the hash reproducible from the line alone: verify re-serializes and
// refuses a line whose text is not exactly its canonical form (duplicate keys, reformatting).

#include <cstdint>
#include <filesystem>
#include <functional>
#include <istream>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

namespace kscribe {

inline constexpr const char* kAuditGenesis = "genesis";

/// Canonical JSON text of `value`: sorted keys, no whitespace, \u-escaped non-ASCII, invalid
/// UTF-8 replaced by U+FFFD.
std::string canonicalJson(const nlohmann::json& value);

/// Sets `prev_hash` and `hash` on `line` and returns its canonical text (no newline).
std::string sealAuditLine(nlohmann::json& line, const std::string& prev_hash);

struct AuditVerifyOptions {
  /// A head hash known from elsewhere (shipped to storage): it must be some line's hash, so a
  /// truncated chain is detected.
  std::optional<std::string> expected_head;
  /// Called now and then with bytes read so far.
  std::function<void(std::uint64_t bytes_read)> progress;
};

struct AuditVerifyResult {
  bool ok = true;
  std::uint64_t lines = 0;           // lines checked
  std::uint64_t bad_line = 0;        // 1-based; 0 when the whole chain is fine
  std::string problem;               // what is wrong with bad_line (or with the head)
  std::string head = kAuditGenesis;  // hash of the last good line
};

/// Checks a chain read from `in`.
AuditVerifyResult verifyAuditChain(std::istream& in, const AuditVerifyOptions& options = {});
/// Checks the chain in `path`; a file that cannot be read is a failure at line 0.
AuditVerifyResult verifyAuditFile(const std::filesystem::path& path,
                                  const AuditVerifyOptions& options = {});

}  // namespace kscribe
