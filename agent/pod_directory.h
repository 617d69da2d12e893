#pragma once
// Pod metadata for identity checks: the pods of this node (namespace, name, service account,
// labels), kept current by a list+watch against the API server through kscribe's own upstream
// credentials. A pod not yet known triggers one fresh list before its connection is decided.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "agent/identity.h"
#include "proxy/server.h"

namespace kscribe {

class PodDirectory {
 public:
  struct Options {
    proxy::UpstreamOptions upstream;
    std::string node_name;  // empty: every pod in the cluster (outside a DaemonSet)
    std::chrono::milliseconds lookup_timeout{3'000};
  };

  /// Starts the list+watch thread at once.
  explicit PodDirectory(Options options);
  ~PodDirectory();
  PodDirectory(const PodDirectory&) = delete;
  PodDirectory& operator=(const PodDirectory&) = delete;

  /// The pod with this uid, from the cache, else after one fresh list (waits at most
  /// lookup_timeout). std::nullopt: the API server does not know it (or could not be reached).
  std::optional<PodInfo> find(const std::string& uid);
  /// Pods currently known.
  std::size_t size() const;
  /// Completed lists since start (for tests and metrics).
  std::uint64_t lists() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

/// Parses one pod object (JSON text of a v1.Pod) into PodInfo; std::nullopt if it has no uid.
std::optional<PodInfo> podFromJson(const std::string& json);

}  // namespace kscribe
