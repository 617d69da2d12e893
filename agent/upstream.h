#pragma once
// From kscribe's Config to the proxy's options: the upstream API server read from a kubeconfig
// (path and context) or the in-cluster service account, and the listener settings.

#include <filesystem>
#include <string>

#include "agent/config.h"
#include "proxy/server.h"

namespace kscribe {

/// Parses kubeconfig YAML: `context` (empty: current-context) selects cluster and user; relative
/// file paths resolve against `dir`. Throws ConfigError naming upstream.kubeconfig or
/// upstream.context. Exec and auth-provider plugins are not supported.
proxy::UpstreamOptions parseKubeconfig(const std::string& yaml, const std::filesystem::path& dir,
                                       const std::string& context);

/// The in-cluster API server: KUBERNETES_SERVICE_HOST/PORT and the service account's token
/// (re-read as it rotates) and CA under `sa_dir`. Throws ConfigError (upstream.in_cluster).
proxy::UpstreamOptions inClusterUpstream(
    const std::filesystem::path& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

/// The upstream per config.upstream (kubeconfig or in-cluster), with timeouts and pool size.
proxy::UpstreamOptions loadUpstream(const UpstreamConfig& config);

/// Everything proxy::Server needs from Config, except the tap and attribution source.
proxy::ServerOptions serverOptions(const Config& config);

}  // namespace kscribe
