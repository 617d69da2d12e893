#include "agent/cgroup_resolver.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <vector>

namespace kscribe {
namespace {

constexpr std::size_t kContainerIdLen = 64;
constexpr std::size_t kMaxGone = 4096;  // cap on remembered deleted cgroups
// FILEID_KERNFS from include/linux/exportfs.h (not exported to user space headers): cgroup2
// file handles are the 64-bit kernfs node id, which is the cgroup id.
constexpr int kFileIdKernfs = 0xfe;

bool isHex(std::string_view s) {
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return !s.empty();
}

bool isContainerId(std::string_view s) { return s.size() == kContainerIdLen && isHex(s); }

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool endsWith(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// A pod uid as the kubelet writes it: 36 chars with dashes (cgroupfs), with underscores (the
// systemd driver escapes '-' in unit names), or a 32-hex config hash for static pods.
std::optional<std::string> podUid(std::string_view s) {
  if (s.size() != 36 && s.size() != 32) return std::nullopt;
  std::string out;
  for (char c : s) {
    if (c == '_' || c == '-') {
      out.push_back('-');
    } else if (std::isxdigit(static_cast<unsigned char>(c))) {
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    } else {
      return std::nullopt;
    }
  }
  return out;
}

// "pod<uid>" (cgroupfs) or "kubepods[-<qos>]-pod<uid>.slice" (systemd).
std::optional<std::string> podComponent(std::string_view c) {
  if (endsWith(c, ".slice")) {
    c.remove_suffix(6);
    auto at = c.rfind("-pod");
    if (!startsWith(c, "kubepods") || at == std::string_view::npos) return std::nullopt;
    return podUid(c.substr(at + 4));
  }
  if (startsWith(c, "pod")) return podUid(c.substr(3));
  return std::nullopt;
}

struct Container {
  std::string runtime, id;
};

// One path component naming a container; `parent` and `in_pod` decide what a bare id means.
std::optional<Container> containerComponent(std::string_view c, std::string_view parent,
                                            bool in_pod) {
  struct Prefix {
    std::string_view prefix, runtime;
  };
  // systemd driver: <prefix><id>.scope; CRI-O with cgroupfs: crio-<id>.
  static constexpr Prefix kPrefixes[] = {
      {"cri-containerd-", "containerd"}, {"crio-", "cri-o"}, {"docker-", "docker"}};
  std::string_view body = c;
  if (endsWith(body, ".scope")) body.remove_suffix(6);
  for (const auto& p : kPrefixes) {
    // "crio-conmon-<id>" is CRI-O's monitor process, not the container: isContainerId rejects it.
    if (startsWith(body, p.prefix) && isContainerId(body.substr(p.prefix.size())))
      return Container{std::string(p.runtime), std::string(body.substr(p.prefix.size()))};
  }
  if (isContainerId(c)) {
    if (parent == "docker") return Container{"docker", std::string(c)};  // /docker/<id>
    // cgroupfs driver under a pod: /kubepods[/<qos>]/pod<uid>/<id>. The path does not name the
    // runtime; containerd is what writes this shape on current Kubernetes (dockershim is gone).
    if (in_pod) return Container{"containerd", std::string(c)};
  }
  return std::nullopt;
}

}  // namespace

ContainerInfo parseCgroupPath(std::string_view path) {
  ContainerInfo info;
  std::string_view parent;
  bool in_pod = false;
  while (!path.empty()) {
    auto slash = path.find('/');
    std::string_view c = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (c.empty()) continue;
    if (auto uid = podComponent(c)) {
      info.pod_uid = *uid;
      in_pod = true;
    } else if (auto ctr = containerComponent(c, parent, in_pod)) {
      info.runtime = std::move(ctr->runtime);
      info.container_id = std::move(ctr->id);
    }
    parent = c;
  }
  return info;
}

CgroupResolver::CgroupResolver(std::filesystem::path root) : root_(std::move(root)) {
  struct statfs fs {};
  kernfs_ = ::statfs(root_.c_str(), &fs) == 0 &&
            static_cast<unsigned long>(fs.f_type) == CGROUP2_SUPER_MAGIC;
}

std::uint64_t CgroupResolver::walks() const {
  std::lock_guard lock(mu_);
  return walks_;
}

std::optional<std::string> CgroupResolver::byHandle(std::uint64_t id, bool* gone) const {
  // open_by_handle_at needs CAP_DAC_READ_SEARCH; without it the walk answers.
  int mount_fd = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (mount_fd < 0) return std::nullopt;
  alignas(file_handle) unsigned char buf[sizeof(file_handle) + sizeof(std::uint64_t)];
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes = sizeof(std::uint64_t);
  fh->handle_type = kFileIdKernfs;
  std::memcpy(fh->f_handle, &id, sizeof id);
  int fd = ::open_by_handle_at(mount_fd, fh, O_PATH | O_CLOEXEC);
  int err = errno;
  ::close(mount_fd);
  if (fd < 0) {
    *gone = err == ESTALE;  // the kernel knows no cgroup with this id any more
    return std::nullopt;
  }
  char target[4096];
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  std::string abs(target, static_cast<std::size_t>(n));
  std::string root = root_.string();
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (abs == root) return "/";
  if (abs.size() > root.size() && startsWith(abs, root) && abs[root.size()] == '/')
    return abs.substr(root.size());
  return std::nullopt;  // outside our view of the hierarchy (another mount namespace)
}

void CgroupResolver::walk() {
  ++walks_;
  std::error_code ec;
  struct stat st {};
  if (::stat(root_.c_str(), &st) == 0) paths_[st.st_ino] = "/";
  auto opts = std::filesystem::directory_options::skip_permission_denied;
  for (auto it = std::filesystem::recursive_directory_iterator(root_, opts, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_directory(ec) || it->is_symlink(ec)) {
      if (it->is_symlink(ec)) it.disable_recursion_pending();
      continue;
    }
    if (::stat(it->path().c_str(), &st) != 0) continue;
    paths_[st.st_ino] = "/" + std::filesystem::relative(it->path(), root_, ec).string();
  }
}

std::optional<std::string> CgroupResolver::pathForId(std::uint64_t id) {
  std::lock_guard lock(mu_);
  if (auto it = paths_.find(id); it != paths_.end()) return it->second;
  if (gone_.contains(id)) return std::nullopt;
  if (kernfs_) {
    bool gone = false;
    if (auto p = byHandle(id, &gone)) {
      paths_[id] = *p;
      return p;
    }
    if (gone) {
      rememberGone(id);
      return std::nullopt;
    }
  }
  // The cgroup existed when the kernel recorded its id, so a walk that starts now and misses it
  // means it was removed; ids are not reused (64-bit kernfs ids), so the miss is remembered.
  walk();
  if (auto it = paths_.find(id); it != paths_.end()) return it->second;
  rememberGone(id);
  return std::nullopt;
}

void CgroupResolver::rememberGone(std::uint64_t id) {
  if (gone_.size() >= kMaxGone) gone_.clear();
  gone_.insert(id);
}

}  // namespace kscribe
