#include "agent/cli.h"

#include <CLI/CLI.hpp>

#include <iostream>

#include "agent/config.h"

namespace kscribe::cli {

Config effectiveConfig(const std::filesystem::path& home_flag,
                       const std::filesystem::path& config_flag) {
  const auto home = resolveHome(home_flag);
  if (!config_flag.empty()) return loadConfig(config_flag, home);
  const auto file = home / "config.yaml";
  if (std::filesystem::exists(file)) return loadConfig(file, home);
  return defaultConfig(home);
}

int run(int argc, char** argv) {
  CLI::App app{"kscribe: records what AI agents do to Kubernetes clusters", "kscribe"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every command");
  Runner runner;
  addVersion(app, runner);
  addConfig(app, runner);
  addServe(app, runner);
  addSessions(app, runner);
  addDemo(app, runner);
  addAudit(app, runner);
  addInit(app, runner);
  addAgent(app, runner);
  addShip(app, runner);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  if (!runner) return kExitUsage;
  try {
    return runner();
  } catch (const ConfigError& e) {
    std::cerr << "kscribe: " << e.what() << "\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "kscribe: " << e.what() << "\n";
    return kExitFailure;
  }
}

}  // namespace kscribe::cli
