#include "agent/daemon.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>

#include "agent/metrics_server.h"
#include "proxy/log.h"

namespace kscribe {

int runDaemon(const Config& config) {
  log::setLevel(log::parseLevel(config.log.level));
  std::filesystem::create_directories(config.sessions.api.storage);
  std::filesystem::create_directories(config.audit.path.parent_path());

  boost::asio::io_context io;
  // Probes answer from here on; /readyz stays 503 until the proxy and attribution say ready.
  auto metrics_runtime = startMetrics(config, io);
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&io](const boost::system::error_code&, int signo) {
    log::info(std::string("received ") + (signo == SIGTERM ? "SIGTERM" : "SIGINT") +
              ", shutting down");
    io.stop();
  });
  log::info("kscribe serving; home " + config.home.string());
  io.run();
  return 0;
}

}  // namespace kscribe
