#pragma once
// One captured body (request or response), fed the bytes exactly as on the wire in any chunking.
// Decompresses gzip (capped), redacts Secrets and credentials with a streaming SAX pass over JSON
// (watch streams included), refuses to keep bodies it cannot vouch for (protobuf, CBOR, YAML that
// may hold a Secret), and cuts what it keeps at max_body_size. A JSON body that fits is kept as
// received and, when a silent redactor pass (the same decisions, writing nothing, over a
// simdjson DOM or, where simdjson refuses the text, driven by yajl) finds nothing to redact in
// it, stored as is (no re-serialization); otherwise the emitting pass writes it. Memory stays
// bounded by twice max_body_size plus small parser state, whatever the body size.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "agent/api_request.h"

namespace kscribe {

struct BodyOptions {
  std::uint64_t max_body_size = 1'000'000;
  std::string max_body_text = "1MB";  // as configured: the truncation marker repeats it
  bool redact_secrets = true;
  std::uint64_t max_decompressed_size = 64'000'000;
  std::string content_type;             // Content-Type header
  std::string content_encoding;         // Content-Encoding header
  const ApiRequest* request = nullptr;  // must outlive the BodyCapture; null: unknown path
  bool is_request = false;
  unsigned status = 0;                          // response status (0 for requests)
  std::optional<std::uint64_t> content_length;  // Content-Length, when sent (sizes buffers only)
  bool verbatim = true;  // clean JSON is stored as received; false: always the emitting pass
};

/// The redaction placeholder for every secret value.
inline constexpr std::string_view kRedacted = "[REDACTED]";

class BodyCapture {
 public:
  explicit BodyCapture(BodyOptions options);
  ~BodyCapture();
  BodyCapture(BodyCapture&&) noexcept;
  BodyCapture& operator=(BodyCapture&&) noexcept;

  /// Bytes exactly as on the wire, any chunking. Never throws.
  void feed(std::span<const char> chunk);

  struct Result {
    std::optional<std::string> body;  // what may be stored; nullopt: nothing stored
    std::string encoding;             // "text" (JSON/plain, possibly redacted/cut) or "base64"
    std::string content_type;
    std::uint64_t wire_size = 0;  // full size on the wire
    bool truncated = false;
    bool redacted = false;
    std::uint64_t redactions = 0;  // values replaced by [REDACTED]
    std::string omitted_reason;  // when body is nullopt and wire_size > 0: why (a marker to store)
    bool incomplete = false;     // the body ended before its end (wire cut) or did not parse
    bool rollout_restart_patch = false;  // request body is a `kubectl rollout restart` patch
  };
  /// Call once, after the last feed (also when the exchange failed midway). Never throws.
  Result finish();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kscribe
