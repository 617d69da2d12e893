// `kscribe audit verify [FILE]`: checks the audit log's hash chain.
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "agent/audit_chain.h"
#include "agent/cli.h"
#include "agent/config.h"

namespace kscribe::cli {

void addAudit(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("audit", "Work with the hash-chained audit log");
  cmd->require_subcommand(1);
  struct Opts {
    std::filesystem::path home, config, file;
    std::string head;
    bool quiet = false;
  };
  auto opts = std::make_shared<Opts>();
  auto* verify = cmd->add_subcommand(
      "verify", "Check the hash chain; exit 0 if intact, 1 naming the first bad line");
  verify->add_option("file", opts->file, "Audit log (default: audit.path from the config)");
  verify->add_option("--head", opts->head,
                     "A head hash known from elsewhere (e.g. shipped to storage): it must be in "
                     "the chain, so a truncated log fails");
  verify->add_option("--home", opts->home, "kscribe home (default $KSCRIBE_HOME, else ~/.kscribe)");
  verify->add_option("--config", opts->config, "Config file (default <home>/config.yaml)");
  verify->add_flag("--quiet,-q", opts->quiet, "Print nothing; only the exit code tells");
  verify->callback([&run, opts] {
    run = [opts] {
      std::filesystem::path file = opts->file;
      if (file.empty()) file = effectiveConfig(opts->home, opts->config).audit.path;
      AuditVerifyOptions vo;
      if (!opts->head.empty()) vo.expected_head = opts->head;
      std::error_code ec;
      const auto total = std::filesystem::file_size(file, ec);
      const bool show_progress = !opts->quiet && ::isatty(STDERR_FILENO) && !ec && total > 0;
      auto last = std::chrono::steady_clock::now();
      if (show_progress) {
        vo.progress = [&](std::uint64_t bytes) {
          auto now = std::chrono::steady_clock::now();
          if (now - last < std::chrono::milliseconds(200) && bytes < total) return;
          last = now;
          std::fprintf(
              stderr, "\rverifying %s: %3d%%", file.c_str(),
              static_cast<int>(100.0 * static_cast<double>(bytes) / static_cast<double>(total)));
          std::fflush(stderr);
        };
      }
      AuditVerifyResult r = verifyAuditFile(file, vo);
      if (show_progress) std::fprintf(stderr, "\r\033[K");
      if (!r.ok) {
        if (!opts->quiet) {
          if (r.bad_line == 0) {
            std::cerr << "kscribe: " << r.problem << "\n";
          } else {
            std::cout << file.string() << ": line " << r.bad_line << ": " << r.problem << "\n";
          }
        }
        return kExitFailure;
      }
      if (!opts->quiet) {
        std::cout << file.string() << ": chain intact, " << r.lines << " lines, head " << r.head
                  << "\n";
      }
      return kExitOk;
    };
  });
}

}  // namespace kscribe::cli
