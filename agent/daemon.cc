#include "agent/daemon.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>

#include "agent/attribution.h"
#include "agent/bpf_loader.h"
#include "agent/metrics.h"
#include "proxy/log.h"

namespace kscribe {

int runDaemon(const Config& config) {
  log::setLevel(log::parseLevel(config.log.level));
  std::filesystem::create_directories(config.sessions.api.storage);
  std::filesystem::create_directories(config.audit.path.parent_path());

  // Before the proxy: a connection accepted before the program is attached has no record.
  // required mode throws here (exit 1) naming what is missing: BTF, root, the load or the attach.
  AttributionRuntime attribution = startAttribution(config.attribution, {config.listen.port});
  if (attribution.loader) {
    const BpfLoader* loader = attribution.loader.get();
    metrics::exportBpfCounters(metrics::get(), [loader] {
      auto c = loader->counters();
      return std::vector<std::uint64_t>(c.begin(), c.end());
    });
  }
  // TODO(lead): hand attribution.source.get() to the proxy's ServerOptions (AttributionSource*)
  // once proxy/ lands on main.

  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&io](const boost::system::error_code&, int signo) {
    log::info(std::string("received ") + (signo == SIGTERM ? "SIGTERM" : "SIGINT") +
              ", shutting down");
    io.stop();
  });
  log::info("kscribe serving; home " + config.home.string());
  io.run();
  if (attribution.loader) {
    metrics::exportBpfCounters(metrics::get(), {});  // before the loader goes
    auto c = attribution.loader->counters();
    std::string line = "attribution counters:";
    for (unsigned i = 0; i < c.size(); ++i)
      line += std::string(" ") + bpf::counterName(i) + "=" + std::to_string(c[i]);
    log::info(line);
  }
  return 0;
}

}  // namespace kscribe
