#pragma once
// Files that survive a crash: appends with explicit fsync, whole files published by
// write-to-temp, fsync, rename, fsync the directory. Errors come back as std::error_code; the
// caller decides (sessions.on_record_failure), nothing here ignores one.

#include <openssl/evp.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>

namespace kscribe::durable {

/// Test hook: called before each write/fsync/rename with the operation ("write", "fsync",
/// "rename") and the path; a non-zero errno makes that operation fail as if the kernel had.
using FaultHook = std::function<int(std::string_view op, const std::filesystem::path& path)>;

/// An append-only file. A failed or short write is cut back, so the file only ever holds whole
/// appends.
class AppendFile {
 public:
  AppendFile() = default;
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  std::error_code open(const std::filesystem::path& path, const FaultHook* fault = nullptr);
  std::error_code append(std::string_view data);
  /// fdatasync if anything was appended since the last sync; then the synced whole pages leave
  /// the page cache (POSIX_FADV_DONTNEED). What is appended here is written once and read
  /// rarely (a ship, a `sessions show`), so it should not crowd the host's cache; and freed
  /// pages come back at once for the next appends, where fresh ones cost the kernel more.
  std::error_code sync();
  void close();
  bool isOpen() const { return fd_ >= 0; }
  bool dirty() const { return dirty_; }
  std::uint64_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::uint64_t dropped_ = 0;  // bytes before this are synced and out of the page cache
  bool dirty_ = false;
  std::filesystem::path path_;
  const FaultHook* fault_ = nullptr;
};

/// Publishes `data` at `path` atomically and durably (temp file, fsync, rename, fsync dir).
std::error_code writeFileAtomic(const std::filesystem::path& path, std::string_view data,
                                const FaultHook* fault = nullptr);
/// fsyncs a directory so a rename or create in it survives a crash.
std::error_code syncDirectory(const std::filesystem::path& dir);
/// Cuts a trailing partial line (bytes after the last '\n'); `removed` gets how many.
std::error_code cutTornTail(const std::filesystem::path& path, std::uint64_t& removed);

/// Incremental SHA-256 (OpenSSL EVP), hex output.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view data);
  /// The hex digest of everything so far; the context stays usable.
  std::string hex() const;

 private:
  EVP_MD_CTX* ctx_;
};

/// Lowercase hex SHA-256 of `data`.
std::string sha256Hex(std::string_view data);
/// SHA-256 of a whole file; empty string and `ec` set if it cannot be read.
std::string sha256File(const std::filesystem::path& path, std::error_code& ec);

}  // namespace kscribe::durable
