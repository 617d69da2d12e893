#pragma once
// From a cgroup v2 id to its path, and from a path to the container and pod it names.

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace kscribe {

/// What a cgroup path says about its container; empty fields when it says nothing (a host
/// process).
struct ContainerInfo {
  std::string runtime;       // containerd | cri-o | docker | ""
  std::string container_id;  // 64 hex digits
  std::string pod_uid;       // with dashes, whatever the cgroup driver wrote
};

/// Parses a cgroup path (relative to the cgroup v2 root) written by the cgroupfs or systemd cgroup
/// driver for containerd, CRI-O or Docker. The deepest container component wins.
ContainerInfo parseCgroupPath(std::string_view path);

/// Maps cgroup ids (as bpf_get_current_cgroup_id() returns them: the cgroup directory's inode) to
/// paths under `root`. Thread-safe; caches what it finds.
class CgroupResolver {
 public:
  /// `root` is the cgroup v2 mount (or a fixture tree of directories).
  explicit CgroupResolver(std::filesystem::path root);

  /// The path of cgroup `id` relative to the root, starting with '/' ("/" for the root itself);
  /// nullopt when no cgroup has that id any more.
  std::optional<std::string> pathForId(std::uint64_t id);

  /// How many directory walks ran (tests and metrics).
  std::uint64_t walks() const;

 private:
  std::optional<std::string> byHandle(std::uint64_t id, bool* gone) const;
  void walk();
  void rememberGone(std::uint64_t id);

  std::filesystem::path root_;
  bool kernfs_ = false;  // root is a real cgroup2 mount: ids open as file handles
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, std::string> paths_;
  std::unordered_set<std::uint64_t> gone_;  // not found by a walk after they were recorded
  std::uint64_t walks_ = 0;
};

}  // namespace kscribe
