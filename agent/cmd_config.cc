// `kscribe config show|check`: the effective configuration, and validation of a file.
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "agent/cli.h"
#include "agent/config.h"

namespace kscribe::cli {

void addConfig(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("config", "Show or check the configuration");
  cmd->require_subcommand(1);
  struct Opts {
    std::filesystem::path home, config;
    bool defaults = false;
    bool yaml = false;
  };
  auto opts = std::make_shared<Opts>();

  auto* show = cmd->add_subcommand("show", "Print the effective configuration as JSON (or YAML)");
  show->add_option("--home", opts->home, "kscribe home (default $KSCRIBE_HOME, else ~/.kscribe)");
  show->add_option("--config", opts->config, "Config file (default <home>/config.yaml)");
  show->add_flag("--defaults", opts->defaults, "Print the built-in defaults, ignoring any file");
  show->add_flag("--yaml", opts->yaml, "Print YAML instead of JSON");
  show->callback([&run, opts] {
    run = [opts] {
      Config c = opts->defaults ? defaultConfig(resolveHome(opts->home))
                                : effectiveConfig(opts->home, opts->config);
      std::cout << (opts->yaml ? toYaml(c) : toJson(c).dump(2) + "\n");
      return kExitOk;
    };
  });

  auto* check =
      cmd->add_subcommand("check", "Validate a config file; exit 2 naming the first problem");
  check->add_option("file", opts->config, "Config file")->required();
  check->add_option("--home", opts->home, "kscribe home used for defaults");
  check->callback([&run, opts] {
    run = [opts] {
      loadConfig(opts->config, resolveHome(opts->home));
      std::cout << opts->config.string() << ": ok\n";
      return kExitOk;
    };
  });
}

}  // namespace kscribe::cli
