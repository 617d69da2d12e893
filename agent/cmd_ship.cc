// `kscribe ship` (upload the spool to S3-compatible storage, once or continuously) and
// `kscribe spool add|list` (hand a closed session to the spool by hand; inspect it).
#include <signal.h>
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "agent/cli.h"
#include "agent/config.h"
#include "agent/shipper.h"

namespace kscribe::cli {
namespace fs = std::filesystem;

namespace {

struct ShipOpts {
  fs::path home, config;
  bool once = false;
  bool create_bucket = false;
};

Config shippingConfig(const fs::path& home, const fs::path& config_flag) {
  Config c = effectiveConfig(home, config_flag);
  if (!c.shipping.enabled)
    throw ConfigError("shipping.enabled", "is false; set it (with endpoint and bucket) to ship");
  return c;
}

void printStatus(const ShipperStatus& s) {
  std::cout << "pending sessions: " << s.pending_entries << ", spool bytes: " << s.spool_bytes
            << ", uploaded objects: " << s.uploaded_objects
            << ", uploaded sessions: " << s.uploaded_sessions
            << ", failed uploads: " << s.failed_uploads << ", retries: " << s.s3.retries
            << ", dropped sessions: " << s.dropped_sessions
            << ", audit heads: " << s.audit_heads_uploaded << "\n";
  if (!s.last_error.empty()) std::cout << "last error: " << s.last_error << "\n";
}

int runShip(const ShipOpts& o) {
  Config c = shippingConfig(o.home, o.config);
  auto client = std::make_unique<S3Client>(s3Options(c.shipping), loadCredentials(c.shipping));
  if (o.create_bucket) {
    S3Result r = client->createBucket();
    // An existing bucket of ours is fine.
    if (!r.ok && r.code != "BucketAlreadyOwnedByYou" && r.code != "BucketAlreadyExists") {
      std::cerr << "kscribe ship: cannot create bucket " << c.shipping.bucket << ": "
                << r.describe() << "\n";
      return kExitFailure;
    }
  }
  if (o.once) {
    Shipper shipper(c, std::move(client));
    std::size_t remaining = shipper.drainOnce();
    bool head_ok = shipper.uploadAuditHead();
    auto st = shipper.status();
    printStatus(st);
    if (remaining > 0 || !head_ok) {
      std::cerr << "kscribe ship: " << remaining << " session(s) not uploaded: " << st.last_error
                << "\n";
      return kExitFailure;
    }
    return kExitOk;
  }
  // Continuous: signals are taken synchronously by this thread, so stop() runs outside a handler.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  Shipper shipper(c, std::move(client));
  shipper.start();
  std::cerr << "kscribe ship: shipping " << c.shipping.spool.string() << " to "
            << c.shipping.endpoint << " bucket " << c.shipping.bucket << "\n";
  int sig = 0;
  sigwait(&set, &sig);
  shipper.stop();
  printStatus(shipper.status());
  return kExitOk;
}

struct SpoolAddOpts {
  fs::path home, config;
  std::string agent, session_id;
  std::int64_t started = 0;
  fs::path data, manifest;
};

int runSpoolAdd(const SpoolAddOpts& o) {
  Config c = effectiveConfig(o.home, o.config);
  auto client = std::make_unique<S3Client>(s3Options(c.shipping), sigv4::Credentials{});
  Shipper shipper(c, std::move(client));
  ClosedSession s{o.session_id, o.agent,
                  o.started ? std::chrono::system_clock::time_point(std::chrono::seconds(o.started))
                            : std::chrono::system_clock::now(),
                  o.data, o.manifest};
  std::string error;
  if (!shipper.sessionClosed(s, &error)) {
    std::cerr << "kscribe spool add: " << error << "\n";
    return kExitFailure;
  }
  std::cout << "spooled " << o.session_id << "; spool bytes " << shipper.spool().bytes()
            << "; accepting new requests: " << (shipper.accepting() ? "yes" : "no") << "\n";
  return kExitOk;
}

int runSpoolList(const fs::path& home, const fs::path& config) {
  Config c = effectiveConfig(home, config);
  auto client = std::make_unique<S3Client>(s3Options(c.shipping), sigv4::Credentials{});
  Shipper shipper(c, std::move(client));
  for (const auto& e : shipper.spool().pending()) {
    std::cout << e.id << "\t" << e.agent << "\t" << e.bytes;
    for (const auto& f : e.files) std::cout << "\t" << f.key << (f.uploaded ? " (uploaded)" : "");
    std::cout << "\n";
  }
  std::cout << "spool bytes " << shipper.spool().bytes()
            << "; accepting new requests: " << (shipper.accepting() ? "yes" : "no")
            << "; dropped: " << shipper.spool().dropped() << "\n";
  return kExitOk;
}

}  // namespace

void addShip(CLI::App& app, Runner& run) {
  auto o = std::make_shared<ShipOpts>();
  auto* ship = app.add_subcommand(
      "ship", "Upload spooled sessions and the audit chain head to S3-compatible storage");
  ship->add_option("--home", o->home, "kscribe home (default $KSCRIBE_HOME, else ~/.kscribe)");
  ship->add_option("--config", o->config, "Config file (default <home>/config.yaml)");
  ship->add_flag("--once", o->once,
                 "Upload what is pending and exit (1 if anything is left, naming why)");
  ship->add_flag("--create-bucket", o->create_bucket, "Create the bucket first if missing");
  ship->callback([&run, o] { run = [o] { return runShip(*o); }; });

  auto* spool = app.add_subcommand("spool", "Inspect the shipping spool or add a session to it");
  spool->require_subcommand(1);
  auto a = std::make_shared<SpoolAddOpts>();
  auto* add = spool->add_subcommand("add", "Hand a closed session's files to the spool");
  add->add_option("--home", a->home, "kscribe home (default $KSCRIBE_HOME, else ~/.kscribe)");
  add->add_option("--config", a->config, "Config file (default <home>/config.yaml)");
  add->add_option("--agent", a->agent, "Agent name")->required();
  add->add_option("--session-id", a->session_id, "Session id")->required();
  add->add_option("--started", a->started, "Session start, seconds since the epoch (default now)");
  add->add_option("DATA", a->data, "The session's JSONL file")->required();
  add->add_option("MANIFEST", a->manifest, "The session's manifest");
  add->callback([&run, a] { run = [a] { return runSpoolAdd(*a); }; });
  auto l = std::make_shared<ShipOpts>();
  auto* list = spool->add_subcommand("list", "List pending sessions and the spool's size");
  list->add_option("--home", l->home, "kscribe home (default $KSCRIBE_HOME, else ~/.kscribe)");
  list->add_option("--config", l->config, "Config file (default <home>/config.yaml)");
  list->callback([&run, l] { run = [l] { return runSpoolList(l->home, l->config); }; });
}

}  // namespace kscribe::cli
