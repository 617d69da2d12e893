// `kscribe serve`: run the agent in the foreground.
#include <CLI/CLI.hpp>

#include <memory>

#include "agent/cli.h"
#include "agent/config.h"
#include "agent/daemon.h"

namespace kscribe::cli {

void addServe(CLI::App& app, Runner& run) {
  struct Opts {
    std::filesystem::path home, config;
  };
  auto opts = std::make_shared<Opts>();
  auto* cmd =
      app.add_subcommand("serve", "Run the agent: attribution, proxy, recorder, shipper, metrics");
  cmd->add_option("--home", opts->home, "kscribe home (default $KSCRIBE_HOME, else ~/.kscribe)");
  cmd->add_option("--config", opts->config,
                  "Config file (default <home>/config.yaml, else built-in defaults)");
  cmd->callback([&run, opts] {
    run = [opts] { return runDaemon(effectiveConfig(opts->home, opts->config)); };
  });
}

}  // namespace kscribe::cli
