#pragma once
// The attribution BPF program's lifetime: open -> configure -> load -> attach (a bpf_link on the
// cgroup v2 root) -> detach on destruction. The kernel side is bpf/attribution.bpf.c.

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "agent/bpf_abi.h"

struct attribution_bpf;
struct bpf_link;

namespace kscribe {

/// A start-up failure of the BPF side. what() is one line: what failed, the errno and what it
/// means on this kind of kernel.
class BpfError : public std::runtime_error {
 public:
  BpfError(const std::string& message, int err) : std::runtime_error(message), errno_(err) {}
  int error() const { return errno_; }

 private:
  int errno_;
};

/// The mount point of the cgroup v2 hierarchy in `proc_mounts` (a /proc/mounts file), or empty.
std::filesystem::path findCgroup2Mount(const std::filesystem::path& proc_mounts = "/proc/mounts");

/// Why the BPF side cannot start here, checked before any load: "" when the environment has what
/// it needs (kernel BTF at `btf`, the capabilities), else one line naming what is missing.
std::string bpfPreflight(const std::filesystem::path& btf = "/sys/kernel/btf/vmlinux");

/// Summed per-CPU counters, indexed by enum kscribe_counter.
using BpfCounters = std::array<std::uint64_t, KSCRIBE_CNT_MAX>;

/// BPF run-time statistics of the program (needs bpf_enable_stats(BPF_STATS_RUN_TIME) active).
struct BpfRunStats {
  std::uint64_t run_time_ns = 0;
  std::uint64_t run_cnt = 0;
};

/// RAII over the attribution skeleton: loaded and attached on construction, detached on
/// destruction (a bpf_link also detaches if the process dies).
class BpfLoader {
 public:
  struct Options {
    std::filesystem::path cgroup;  // where to attach; empty: the cgroup v2 mount (/proc/mounts)
  };

  /// Opens, configures, loads and attaches. Throws BpfError.
  explicit BpfLoader(Options options);
  BpfLoader() : BpfLoader(Options{}) {}
  ~BpfLoader();
  BpfLoader(const BpfLoader&) = delete;
  BpfLoader& operator=(const BpfLoader&) = delete;

  /// Tracks connections to `port` (host order). Throws BpfError when the map refuses it.
  void addPort(std::uint16_t port);
  void removePort(std::uint16_t port);

  /// The owner the kernel recorded for an accepted socket, if the join saw it.
  std::optional<kscribe_owner> lookup(int accepted_fd) const;

  BpfCounters counters() const;
  BpfRunStats runStats() const;

  const std::filesystem::path& cgroup() const { return cgroup_; }
  int programFd() const;
  int ownersFd() const { return owners_fd_; }
  /// Which optional kernel features the loaded program uses (for the start-up log line).
  bool readsTask() const { return read_task_; }
  bool hasNetnsCookie() const { return netns_cookie_; }

 private:
  struct SkelDeleter {
    void operator()(attribution_bpf* s) const;
  };
  struct LinkDeleter {
    void operator()(bpf_link* l) const;
  };
  void loadWith(bool read_task, bool netns_cookie);

  std::filesystem::path cgroup_;
  std::unique_ptr<attribution_bpf, SkelDeleter> skel_;
  std::unique_ptr<bpf_link, LinkDeleter> link_;
  int owners_fd_ = -1;
  int ports_fd_ = -1;
  int counters_fd_ = -1;
  bool read_task_ = false;
  bool netns_cookie_ = false;
};

}  // namespace kscribe
