#include "agent/daemon.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <optional>
#include <sstream>
#include <thread>

#include "agent/attribution.h"
#include "agent/bpf_loader.h"
#include "agent/clock.h"
#include "agent/identity.h"
#include "agent/metrics.h"
#include "agent/metrics_server.h"
#include "agent/metrics_tap.h"
#include "agent/pod_directory.h"
#include "agent/recorder.h"
#include "agent/s3_client.h"
#include "agent/shipper.h"
#include "agent/upstream.h"
#include "proxy/log.h"
#include "proxy/server.h"

namespace kscribe {
namespace {

constexpr const char* kSpoolFullMessage =
    "kscribe's shipping spool is full (central storage has not confirmed the uploads yet), and "
    "it does not accept requests it may not be able to keep; try again later";

}  // namespace

int runDaemon(const Config& config) {
  log::setLevel(log::parseLevel(config.log.level));

  // Start-up config checks first: an unusable setting is a ConfigError naming its key (exit 2).
  proxy::ServerOptions options = serverOptions(config);
  for (const auto& [key, path] :
       {std::pair{"tls.cert", config.tls.cert}, std::pair{"tls.key", config.tls.key},
        std::pair{"tls.ca_cert", config.tls.ca_cert}}) {
    if (!std::ifstream(path)) throw ConfigError(key, "cannot read " + path.string());
  }

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

  // Identity: every credential is checked against the workload that presents it. Pods are
  // watched only when some agent has k8s.* selectors.
  std::unique_ptr<PodDirectory> pods;
  if (needsPodMetadata(config.identity)) {
    PodDirectory::Options po;
    po.upstream = options.upstream;
    po.node_name = config.identity.node_name;
    if (const char* node = std::getenv("NODE_NAME"); po.node_name.empty() && node)
      po.node_name = node;
    pods = std::make_unique<PodDirectory>(std::move(po));
  }
  IdentityVerifier identity(config, pods.get());

  // The recorder before the proxy: it recovers sessions and the audit chain a crash left open
  // before any request can arrive (a broken audit chain stops start-up here, exit 1).
  SystemClock clock;
  Recorder recorder(RecorderOptions::fromConfig(config), clock);
  // Closed sessions go to the spool and on to S3 when shipping is enabled (credentials from the
  // AWS environment or shared credentials file, never from the config).
  std::unique_ptr<Shipper> shipper;
  if (config.shipping.enabled) {
    shipper = std::make_unique<Shipper>(
        config,
        std::make_unique<S3Client>(s3Options(config.shipping), loadCredentials(config.shipping)));
  }
  recorder.onSessionClosed([&shipper](const PublishedSession& s) {
    if (!shipper) return;
    std::tm tm{};
    std::istringstream(s.date) >> std::get_time(&tm, "%Y-%m-%d");
    const auto started = std::chrono::system_clock::from_time_t(::timegm(&tm));
    std::string error;
    if (!shipper->sessionClosed(ClosedSession{s.session_id, s.agent, started, s.jsonl, s.manifest},
                                &error)) {
      log::error("shipping: session " + s.session_id + " not spooled: " + error);
    }
  });
  // A full spool under on_spool_full: reject refuses new requests with 503 and a Status body,
  // through the recorder's refusal path (audited as denied). Sessions already open still close
  // into the spool; once uploads drain it below the bound, requests are admitted again.
  if (shipper && config.shipping.on_spool_full == "reject") {
    recorder.setAdmission([s = shipper.get()]() -> std::optional<proxy::Refusal> {
      if (s->accepting()) return std::nullopt;
      return proxy::Refusal{503, "ServiceUnavailable", kSpoolFullMessage};
    });
  }
  recorder.start();
  if (shipper) shipper->start();

  // MetricsTap counts every exchange into /metrics and hands it on to the recorder. With metrics
  // off nothing serves those counts, so the recorder takes the exchanges itself.
  MetricsTap metrics_tap(&recorder, metrics::get());
  options.tap = config.metrics.enabled ? static_cast<proxy::Tap*>(&metrics_tap) : &recorder;
  options.attribution = attribution.source.get();
  options.identity = &identity;
  std::unique_ptr<proxy::Server> server;
  try {
    server = std::make_unique<proxy::Server>(std::move(options));
  } catch (const proxy::StartupError& e) {
    throw ConfigError(e.key(), std::string(e.what()).substr(e.key().size() + 2));
  }
  // The bound port (listen.port may be 0), registered before the first accept.
  attribution.trackPort(server->port());

  boost::asio::io_context io;
  // Probes answer from here on; /readyz stays 503 until the proxy and attribution say ready.
  auto metrics_runtime = startMetrics(config, io);
  if (metrics_runtime && shipper) {
    health().addReadiness("spool", [s = shipper.get(), max = config.shipping.spool_max_size.text] {
      return s->accepting() ? std::string()
                            : "spool full (shipping.spool_max_size " + max +
                                  "): waiting for uploads to central storage";
    });
  }
  if (attribution.loader) health().setCondition(kReadyAttribution, true);  // attached above
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    log::info(std::string("received ") + (signo == SIGTERM ? "SIGTERM" : "SIGINT") +
              ", draining (grace " + std::to_string(config.limits.shutdown_grace.count()) + "ms)");
    server->stop();
  });
  server->start();
  metrics::get().connections_open.setValue(
      [s = server.get()] { return static_cast<double>(s->activeConnections()); });
  health().setCondition(kReadyProxy, true);
  log::info("kscribe serving on " + config.listen.address + ":" + std::to_string(server->port()) +
            "; home " + config.home.string());
  std::thread signal_thread([&io] { io.run(); });
  server->wait();
  io.stop();
  signal_thread.join();
  metrics::get().connections_open.setValue({});  // before the server goes
  server.reset();
  // The proxy has drained (no tap call can follow): close every session and sync.
  recorder.shutdown();
  // Sessions the shutdown just closed go to storage now rather than at the next start.
  if (shipper) shipper->finish(config.shipping.final_upload_timeout);
  if (attribution.loader) {
    metrics::exportBpfCounters(metrics::get(), {});  // before the loader goes
    auto c = attribution.loader->counters();
    std::string line = "attribution counters:";
    for (unsigned i = 0; i < c.size(); ++i)
      line += std::string(" ") + bpf::counterName(i) + "=" + std::to_string(c[i]);
    log::info(line);
  }
  log::info("kscribe stopped");
  return 0;
}

}  // namespace kscribe
