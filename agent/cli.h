#pragma once
// The kscribe command line: one binary, one subcommand per file (cmd_*.cc). Each add* function
// declares its subcommand on `app` and, when that subcommand is chosen, sets `run`.
// Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad config.

#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace kscribe {
struct Config;
}

namespace kscribe::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

using Runner = std::function<int()>;

/// Entry point used by main(): parses argv, runs the chosen command, maps errors to exit codes.
int run(int argc, char** argv);

/// The config a command works with: --config FILE if given, else <home>/config.yaml if it
/// exists, else the defaults. Throws ConfigError.
Config effectiveConfig(const std::filesystem::path& home_flag,
                       const std::filesystem::path& config_flag);

void addVersion(CLI::App& app, Runner& run);
void addConfig(CLI::App& app, Runner& run);
void addServe(CLI::App& app, Runner& run);
void addSessions(CLI::App& app, Runner& run);
void addDemo(CLI::App& app, Runner& run);
void addAudit(CLI::App& app, Runner& run);
void addInit(CLI::App& app, Runner& run);
void addAgent(CLI::App& app, Runner& run);
void addShip(CLI::App& app, Runner& run);

/// The comment block `kscribe init` and `kscribe agent add` put at the top of config.yaml.
std::string configFileHeader();

}  // namespace kscribe::cli
