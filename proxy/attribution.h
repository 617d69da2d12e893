#pragma once
// What the proxy asks about an accepted socket: which process, cgroup and container opened it.
// agent/ implements AttributionSource over the BPF program; the proxy only calls lookup().

#include <cstdint>
#include <memory>
#include <string>

namespace kscribe::proxy {

/// The kernel's and /proc's account of who opened a connection.
struct Attribution {
  enum class Status {
    kAttributed,    // the BPF join recorded the connecting task
    kUnattributed,  // the program ran but has no record of this socket (never guessed)
    kUnavailable,   // attribution is off or could not start (mode optional/off)
  };
  Status status = Status::kUnavailable;

  // From the kernel, at connect() time.
  std::uint32_t tgid = 0;
  std::uint32_t tid = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::string comm;
  std::uint64_t cgroup_id = 0;
  std::uint64_t netns_cookie = 0;

  // From /proc and the cgroup path, at lookup time.
  std::string exe;
  std::string cmdline;  // arguments joined by spaces
  std::uint32_t ppid = 0;
  std::uint64_t start_time =
      0;  // clock ticks since boot (/proc/PID/stat field 22); with tgid, the process identity
  bool process_exited =
      false;                // the process was gone at lookup: only the kernel's fields are known
  std::string cgroup_path;  // relative to the cgroup v2 mount, starting with '/'
  std::string container_runtime;  // containerd | cri-o | docker | "" (host)
  std::string container_id;
  std::string pod_uid;

  static const char* statusName(Status s) {
    switch (s) {
      case Status::kAttributed:
        return "attributed";
      case Status::kUnattributed:
        return "unattributed";
      case Status::kUnavailable:
        return "unavailable";
    }
    return "unavailable";
  }
};

/// Answers "who opened this accepted socket". Called once per connection, right after accept(),
/// on the connection's strand: it must not block for long (a few /proc reads at most).
class AttributionSource {
 public:
  virtual ~AttributionSource() = default;
  virtual std::shared_ptr<const Attribution> lookup(int accepted_fd) = 0;
};

}  // namespace kscribe::proxy
