#include "agent/daemon.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>

#include "agent/clock.h"
#include "agent/recorder.h"
#include "proxy/log.h"

namespace kscribe {

int runDaemon(const Config& config) {
  log::setLevel(log::parseLevel(config.log.level));
  std::filesystem::create_directories(config.sessions.api.storage);
  std::filesystem::create_directories(config.audit.path.parent_path());

  // The recorder first: it recovers sessions and the audit chain a crash left open before any
  // request can arrive.
  SystemClock clock;
  Recorder recorder(RecorderOptions::fromConfig(config), clock);
  recorder.start();
  // TODO(proxy): when proxy::Server lands, construct it here with ServerOptions::tap = &recorder
  // and stop it (drain) before recorder.shutdown() below.

  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&io](const boost::system::error_code&, int signo) {
    log::info(std::string("received ") + (signo == SIGTERM ? "SIGTERM" : "SIGINT") +
              ", shutting down");
    io.stop();
  });
  log::info("kscribe serving; home " + config.home.string());
  io.run();
  recorder.shutdown();
  return 0;
}

}  // namespace kscribe
