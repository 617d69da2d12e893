// `kscribe version`: what this binary is and what it was built with.
#include <bpf/libbpf.h>
#include <openssl/crypto.h>
#include <CLI/CLI.hpp>

#include <boost/version.hpp>
#include <iostream>

#include "agent/cli.h"

namespace kscribe::cli {

void addVersion(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("version", "Print the version, git commit and library versions");
  cmd->callback([&run] {
    run = [] {
      std::cout << "kscribe " << KSCRIBE_VERSION << "\n"
                << "commit  " << KSCRIBE_GIT_COMMIT << "\n"
                << "libbpf  " << libbpf_major_version() << "." << libbpf_minor_version() << "\n"
                << "openssl " << OpenSSL_version(OPENSSL_VERSION_STRING) << "\n"
                << "boost   " << BOOST_VERSION / 100000 << "." << BOOST_VERSION / 100 % 1000 << "."
                << BOOST_VERSION % 100 << "\n";
      return kExitOk;
    };
  });
}

}  // namespace kscribe::cli
