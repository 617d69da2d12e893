#pragma once
// A small S3 client for the shipper: PUT object (Content-MD5 and a signed payload hash, so the
// server verifies the bytes), multipart upload above a threshold, GET/HEAD for checks. SigV4 over
// the project's own HTTP client (Boost.Beast; TLS with a configurable CA, or plain HTTP).
// Retries with exponential backoff and full jitter on transport errors, 5xx, SlowDown and
// RequestTimeout; RequestTimeTooSkewed and credential errors are not retried and say what is
// wrong. Synchronous: the shipper calls it from its own thread.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "agent/sigv4.h"

namespace kscribe {

struct ShippingConfig;

struct S3Options {
  std::string endpoint;  // http://host:port or https://host[:port]
  std::string bucket;
  std::string region = "us-east-1";
  bool virtual_hosted = false;  // bucket.host/key instead of host/bucket/key
  std::filesystem::path ca_file;
  std::chrono::milliseconds timeout{30'000};  // per network operation (connect, write, read)
  std::uint32_t max_retries = 8;
  std::uint64_t multipart_threshold = 16'000'000;
  std::uint64_t part_size = 8'000'000;
  std::chrono::milliseconds backoff_base{200};
  std::chrono::milliseconds backoff_cap{20'000};
};

/// The outcome of one S3 operation after its retries.
struct S3Result {
  bool ok = false;
  unsigned status = 0;     // last HTTP status; 0 for a transport error
  std::string code;        // S3 error code (SlowDown, InvalidAccessKeyId, ...) or "Network"
  std::string message;     // human-readable; never holds a credential
  bool retryable = false;  // the last failure was of a kind that is retried
  std::uint32_t attempts = 0;
  std::string etag;
  std::string body;  // GET only
  /// "403 InvalidAccessKeyId: ..." or "ok".
  std::string describe() const;
};

/// Counters the shipper exports as metrics.
struct S3Stats {
  std::uint64_t requests = 0;
  std::uint64_t retries = 0;
  std::uint64_t failures = 0;
  std::uint64_t bytes_sent = 0;
};

class S3Client {
 public:
  using Sleep = std::function<void(std::chrono::milliseconds)>;
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  /// `sleep` and `now` are injectable for tests; defaults sleep and use the system clock.
  S3Client(S3Options options, sigv4::Credentials credentials, Sleep sleep = {}, Clock now = {});
  ~S3Client();
  S3Client(const S3Client&) = delete;
  S3Client& operator=(const S3Client&) = delete;

  /// Uploads a file: one PUT up to multipart_threshold, multipart above (a failed multipart
  /// upload is aborted). The same key always overwrites, so a retry never duplicates.
  S3Result putFile(const std::string& key, const std::filesystem::path& file,
                   const std::string& content_type = "application/octet-stream");
  S3Result putObject(const std::string& key, const std::string& body,
                     const std::string& content_type = "application/octet-stream");
  S3Result getObject(const std::string& key);
  S3Result headObject(const std::string& key);
  S3Result createBucket();

  S3Stats stats() const;
  const S3Options& options() const;

  /// Stops retry waits early (shutdown); the current attempt still finishes or times out.
  void cancel();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The options for `shipping`.
S3Options s3Options(const ShippingConfig& shipping);

/// Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else from the
/// shared credentials file (shipping.credentials_file, else $AWS_SHARED_CREDENTIALS_FILE, else
/// ~/.aws/credentials) under shipping.profile ($AWS_PROFILE when the profile is "default").
/// Throws ConfigError naming where it looked (never the values).
sigv4::Credentials loadCredentials(const ShippingConfig& shipping);

/// Delay before retry `attempt` (1-based): uniform in [0, min(cap, base * 2^(attempt-1))].
std::chrono::milliseconds backoffDelay(std::uint32_t attempt, std::chrono::milliseconds base,
                                       std::chrono::milliseconds cap, double uniform01);

}  // namespace kscribe
