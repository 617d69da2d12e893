#pragma once
// The agent's AttributionSource: the kernel's record of an accepted socket (BPF sk storage),
// enriched from /proc and the cgroup path. See bpf/attribution.bpf.c for the kernel side.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/bpf_abi.h"
#include "agent/cgroup_resolver.h"
#include "proxy/attribution.h"

namespace kscribe {

class BpfLoader;

/// What /proc/PID says about a process.
struct ProcessInfo {
  std::string exe;      // readlink of exe; "" when unreadable (kernel threads, permissions)
  std::string cmdline;  // arguments joined by spaces, credential-looking values redacted
  std::string comm;
  std::uint32_t ppid = 0;
  std::uint64_t start_time = 0;  // clock ticks since boot (stat field 22)
};

/// Reads /proc/<tgid> under `proc_root`; nullopt when the process does not exist.
std::optional<ProcessInfo> readProcess(const std::filesystem::path& proc_root, std::uint32_t tgid);

/// Replaces the values of credential-looking flags (--token, --password, ...) with [REDACTED]:
/// kscribe never writes a credential, and kubectl takes some on its command line.
std::string redactCmdline(const std::string& joined_args);

/// An Attribution from a kernel record: the kernel's fields, /proc's when the process that
/// connected is still the one with that pid (same start time), and the cgroup path's container.
proxy::Attribution enrich(const kscribe_owner& owner, const std::filesystem::path& proc_root,
                          CgroupResolver& cgroups);

/// Attribution over the loaded BPF program: lookup() reads the accepted socket's sk storage.
class BpfAttribution : public proxy::AttributionSource {
 public:
  BpfAttribution(const BpfLoader& loader, std::filesystem::path proc_root,
                 std::filesystem::path cgroup_root);
  std::shared_ptr<const proxy::Attribution> lookup(int accepted_fd) override;

 private:
  const BpfLoader& loader_;
  std::filesystem::path proc_root_;
  CgroupResolver cgroups_;
};

/// Attribution that is off or could not start: every connection is `unavailable`.
class UnavailableAttribution : public proxy::AttributionSource {
 public:
  std::shared_ptr<const proxy::Attribution> lookup(int accepted_fd) override;
};

/// Attribution as the daemon runs it: the loader (when BPF runs) and the source the proxy asks.
struct AttributionRuntime {
  std::unique_ptr<BpfLoader> loader;  // null when off or unavailable
  std::unique_ptr<proxy::AttributionSource> source;
  /// Tracks connections to `port` too (e.g. the port the proxy bound when listen.port is 0).
  /// A no-op when BPF is not running. Throws BpfError when the kernel map refuses it.
  void trackPort(std::uint16_t port);
  ~AttributionRuntime();
  AttributionRuntime();
  AttributionRuntime(AttributionRuntime&&) noexcept;
  AttributionRuntime& operator=(AttributionRuntime&&) noexcept;
};

/// Starts attribution in `mode` (required | optional | off) for connections to `ports`.
/// required: throws std::runtime_error naming what is missing (BTF, root, the load or the attach);
/// optional: logs why and returns an UnavailableAttribution; off: UnavailableAttribution.
/// `btf` is the kernel BTF the preflight checks (a parameter so tests can point it elsewhere).
AttributionRuntime startAttribution(const std::string& mode,
                                    const std::vector<std::uint16_t>& ports,
                                    const std::filesystem::path& btf = "/sys/kernel/btf/vmlinux");

}  // namespace kscribe
