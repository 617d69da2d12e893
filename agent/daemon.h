#pragma once
// `kscribe serve`: wires attribution, proxy, recorder, shipper and metrics together and runs
// until SIGTERM or SIGINT, then stops accepting, drains within limits.shutdown_grace and exits.

#include "agent/config.h"

namespace kscribe {

/// Runs the agent in the foreground. Returns the process exit code. Throws ConfigError for a
/// config that cannot work on this machine (a start-up environment check), before anything starts.
int runDaemon(const Config& config);

}  // namespace kscribe
