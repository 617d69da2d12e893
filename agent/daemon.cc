#include "agent/daemon.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>
#include <thread>

#include "agent/upstream.h"
#include "proxy/log.h"
#include "proxy/server.h"

namespace kscribe {

int runDaemon(const Config& config) {
  log::setLevel(log::parseLevel(config.log.level));

  // Start-up checks first: any unusable setting is a ConfigError naming its key (exit 2).
  proxy::ServerOptions options = serverOptions(config);
  // The recorder and attribution plug in here (both may stay null).
  options.tap = nullptr;
  options.attribution = nullptr;
  std::unique_ptr<proxy::Server> server;
  try {
    server = std::make_unique<proxy::Server>(std::move(options));
  } catch (const proxy::StartupError& e) {
    throw ConfigError(e.key(), std::string(e.what()).substr(e.key().size() + 2));
  }

  std::filesystem::create_directories(config.sessions.api.storage);
  std::filesystem::create_directories(config.audit.path.parent_path());

  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    log::info(std::string("received ") + (signo == SIGTERM ? "SIGTERM" : "SIGINT") +
              ", draining (grace " + std::to_string(config.limits.shutdown_grace.count()) + "ms)");
    server->stop();
  });
  server->start();
  log::info("kscribe serving on " + config.listen.address + ":" + std::to_string(server->port()) +
            "; home " + config.home.string());
  std::thread signal_thread([&io] { io.run(); });
  server->wait();
  io.stop();
  signal_thread.join();
  log::info("kscribe stopped");
  return 0;
}

}  // namespace kscribe
