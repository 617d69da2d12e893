#pragma once
// C++ view of the BPF ABI in bpf/attribution.h: the structs are the C ones (never re-declared
// here); this header pins their layout so a change on one side fails to compile on the other.

#include <cstddef>
#include <string_view>

#include "bpf/attribution.h"

namespace kscribe::bpf {

using Owner = kscribe_owner;
using Tuple = kscribe_tuple;

static_assert(sizeof(kscribe_owner) == 80);
static_assert(offsetof(kscribe_owner, tgid) == 0);
static_assert(offsetof(kscribe_owner, cgroup_id) == 16);
static_assert(offsetof(kscribe_owner, netns_cookie) == 24);
static_assert(offsetof(kscribe_owner, connect_boot_ns) == 32);
static_assert(offsetof(kscribe_owner, start_boottime_ns) == 40);
static_assert(offsetof(kscribe_owner, netns_ino) == 48);
static_assert(offsetof(kscribe_owner, flags) == 52);
static_assert(offsetof(kscribe_owner, abi_version) == 56);
static_assert(offsetof(kscribe_owner, comm) == 64);
static_assert(sizeof(kscribe_tuple) == 40);
static_assert(offsetof(kscribe_tuple, client_port) == 32);

/// The comm as text (the kernel NUL-pads it; a 15-character comm has no terminator room issue).
inline std::string_view commOf(const kscribe_owner& o) {
  std::size_t n = 0;
  while (n < sizeof(o.comm) && o.comm[n] != '\0') ++n;
  return {o.comm, n};
}

/// Stable names for the per-CPU counters, as exported.
inline const char* counterName(unsigned which) {
  switch (which) {
    case KSCRIBE_CNT_CONNECT:
      return "connect";
    case KSCRIBE_CNT_ACCEPT:
      return "accept";
    case KSCRIBE_CNT_JOINED:
      return "joined";
    case KSCRIBE_CNT_NO_PENDING:
      return "no_pending";
    case KSCRIBE_CNT_PENDING_FULL:
      return "pending_full";
    case KSCRIBE_CNT_STORAGE_FAIL:
      return "storage_fail";
    case KSCRIBE_CNT_NO_SK:
      return "no_sk";
    case KSCRIBE_CNT_BAD_FAMILY:
      return "bad_family";
    default:
      return "unknown";
  }
}

}  // namespace kscribe::bpf
