#include "agent/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <memory>
#include <stdexcept>

namespace kscribe::durable {
namespace fs = std::filesystem;
namespace {

std::error_code lastError() { return {errno, std::generic_category()}; }

// Opens `path` and reads its size; on failure nothing stays open.
std::error_code openSized(const fs::path& path, int flags, int& fd, off_t& size) {
  fd = ::open(path.c_str(), flags, 0640);
  if (fd < 0) return lastError();
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    auto ec = lastError();
    ::close(fd);
    fd = -1;
    return ec;
  }
  size = st.st_size;
  return {};
}

int injected(const FaultHook* fault, std::string_view op, const fs::path& path) {
  return (fault && *fault) ? (*fault)(op, path) : 0;
}

std::error_code writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return lastError();
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

}  // namespace

AppendFile::~AppendFile() { close(); }

std::error_code AppendFile::open(const fs::path& path, const FaultHook* fault) {
  close();
  fault_ = fault;
  int fd = -1;
  off_t size = 0;
  if (auto ec = openSized(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, fd, size)) return ec;
  fd_ = fd;
  size_ = static_cast<std::uint64_t>(size);
  dropped_ = 0;
  path_ = path;
  dirty_ = false;
  return {};
}

std::error_code AppendFile::append(std::string_view data) {
  if (fd_ < 0) return std::make_error_code(std::errc::bad_file_descriptor);
  if (int e = injected(fault_, "write", path_)) return {e, std::generic_category()};
  auto ec = writeAll(fd_, data);
  if (ec) {
    // A short write leaves a torn line: cut it so the file holds only whole appends.
    if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
      // The torn tail stays; recovery cuts it at the next start.
    }
    return ec;
  }
  size_ += data.size();
  dirty_ = true;
  return {};
}

std::error_code AppendFile::sync() {
  if (fd_ < 0 || !dirty_) return {};
  if (int e = injected(fault_, "fsync", path_)) return {e, std::generic_category()};
  if (::fdatasync(fd_) != 0) return lastError();
  dirty_ = false;
  // Whole pages only: the partly filled last one stays, or the next append would first read it
  // back from disk. Advice only: a failure changes nothing that was written.
  static const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t full = size_ - size_ % page;
  if (full > dropped_) {
    ::posix_fadvise(fd_, static_cast<off_t>(dropped_), static_cast<off_t>(full - dropped_),
                    POSIX_FADV_DONTNEED);
    dropped_ = full;
  }
  return {};
}

void AppendFile::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::error_code syncDirectory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return lastError();
  std::error_code ec;
  if (::fsync(fd) != 0) ec = lastError();
  ::close(fd);
  return ec;
}

std::error_code writeFileAtomic(const fs::path& path, std::string_view data,
                                const FaultHook* fault) {
  fs::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return lastError();
  std::error_code ec;
  if (int e = injected(fault, "write", path)) ec = {e, std::generic_category()};
  if (!ec) ec = writeAll(fd, data);
  if (!ec) {
    if (int e = injected(fault, "fsync", path)) {
      ec = {e, std::generic_category()};
    } else if (::fsync(fd) != 0) {
      ec = lastError();
    }
  }
  ::close(fd);
  if (!ec) {
    if (int e = injected(fault, "rename", path)) {
      ec = {e, std::generic_category()};
    } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
      ec = lastError();
    }
  }
  if (ec) {
    ::unlink(tmp.c_str());
    return ec;
  }
  return syncDirectory(path.parent_path().empty() ? fs::path(".") : path.parent_path());
}

std::error_code cutTornTail(const fs::path& path, std::uint64_t& removed) {
  removed = 0;
  int fd = -1;
  off_t end = 0;
  if (auto ec = openSized(path, O_RDWR | O_CLOEXEC, fd, end)) return ec;
  // Scan backwards for the last newline, a block at a time.
  off_t keep = 0;
  std::array<char, 64 * 1024> buf;
  off_t pos = end;
  bool found = false;
  while (pos > 0 && !found) {
    off_t start = pos > static_cast<off_t>(buf.size()) ? pos - static_cast<off_t>(buf.size()) : 0;
    ssize_t n = ::pread(fd, buf.data(), static_cast<std::size_t>(pos - start), start);
    if (n < 0) {
      auto ec = lastError();
      ::close(fd);
      return ec;
    }
    for (ssize_t i = n - 1; i >= 0; --i) {
      if (buf[static_cast<std::size_t>(i)] == '\n') {
        keep = start + i + 1;
        found = true;
        break;
      }
    }
    pos = start;
  }
  std::error_code ec;
  if (keep < end) {
    if (::ftruncate(fd, keep) != 0 || ::fsync(fd) != 0) ec = lastError();
    if (!ec) removed = static_cast<std::uint64_t>(end - keep);
  }
  ::close(fd);
  return ec;
}

namespace {
// SHA-256 fetched from OpenSSL's provider once: EVP_sha256() makes every EVP_DigestInit look it
// up again, which costs more than hashing an audit line.
const EVP_MD* sha256Md() {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md != nullptr ? md : EVP_sha256();
}
}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_, sha256Md(), nullptr) != 1) {
    throw std::runtime_error("OpenSSL: cannot initialise SHA-256");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::update(std::string_view data) { EVP_DigestUpdate(ctx_, data.data(), data.size()); }

namespace {
std::string hexDigest(const unsigned char* md, unsigned int len) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(len * 2, '0');
  for (unsigned int i = 0; i < len; ++i) {
    out[2 * i] = kHex[md[i] >> 4];
    out[2 * i + 1] = kHex[md[i] & 0xf];
  }
  return out;
}
}  // namespace

std::string Sha256::hex() const {
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX_copy_ex(copy, ctx_);
  EVP_DigestFinal_ex(copy, md, &len);
  EVP_MD_CTX_free(copy);
  return hexDigest(md, len);
}

std::string sha256Hex(std::string_view data) {
  // One context per thread, reused: the writer hashes an audit line for every request.
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  thread_local const std::unique_ptr<EVP_MD_CTX, CtxFree> ctx(EVP_MD_CTX_new());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!ctx || EVP_DigestInit_ex(ctx.get(), sha256Md(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), md, &len) != 1)
    throw std::runtime_error("SHA-256 failed");
  return hexDigest(md, len);
}

std::string sha256File(const fs::path& path, std::error_code& ec) {
  ec.clear();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ec = lastError();
    return {};
  }
  Sha256 h;
  std::array<char, 64 * 1024> buf;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      ec = lastError();
      ::close(fd);
      return {};
    }
    if (n == 0) break;
    h.update(std::string_view(buf.data(), static_cast<std::size_t>(n)));
  }
  ::close(fd);
  return h.hex();
}

}  // namespace kscribe::durable
