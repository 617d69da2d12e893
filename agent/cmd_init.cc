// `kscribe init`: creates the kscribe home — a CA, the proxy's server certificate, config.yaml and
// the directories the agent writes to.
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "agent/cli.h"
#include "agent/config.h"
#include "agent/pki.h"

namespace kscribe::cli {
namespace fs = std::filesystem;

std::string configFileHeader() {
  return "# kscribe configuration. Every key and its meaning: schemas/config.schema.json;\n"
         "# check a change with `kscribe config check FILE`.\n"
         "# `kscribe agent add` rewrites this file: comments other than this header are not "
         "kept.\n";
}

namespace {

// Files init owns; with --force they are replaced, anything else in the home is left alone.
constexpr const char* kOwnedFiles[] = {"ca.crt", "ca.key", "server.crt", "server.key",
                                       "config.yaml"};

void makeDir(const fs::path& dir, fs::perms perms) {
  fs::create_directories(dir);
  fs::permissions(dir, perms, fs::perm_options::replace);
}

int runInit(const fs::path& home_flag, const std::vector<std::string>& sans, bool force) {
  const fs::path home = resolveHome(home_flag);
  if (fs::exists(home / "config.yaml") || fs::exists(home / "ca.key")) {
    if (!force) {
      std::cerr << "kscribe init: " << home.string()
                << " is already a kscribe home; use --force to replace its CA, server "
                   "certificate and config (issued agent credentials stop working)\n";
      return kExitUsage;
    }
    for (const char* f : kOwnedFiles) fs::remove(home / f);
  }
  for (const auto& s : sans) {
    if (s.empty() || s.find_first_of(" ,/") != std::string::npos) {
      std::cerr << "kscribe init: --san \"" << s << "\" is not a DNS name or IP address\n";
      return kExitUsage;
    }
  }

  // The home holds private keys and recordings: owner only.
  makeDir(home, fs::perms::owner_all);
  Config config = defaultConfig(home);
  // Attribution needs root (BPF); an unprivileged home records unattributed rather than refusing.
  config.attribution = ::geteuid() == 0 ? "required" : "optional";
  makeDir(config.sessions.api.storage, fs::perms::owner_all);
  makeDir(config.audit.path.parent_path(), fs::perms::owner_all);

  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const pki::CertKey ca = pki::createCa(std::string("kscribe CA ") + host);
  const std::vector<std::string> all_sans = pki::serverSans(sans);
  const pki::CertKey server = pki::issueServerCert(ca, "kscribe proxy", all_sans);

  pki::writePublicFile(config.tls.ca_cert, ca.cert_pem);
  pki::writeSecretFile(config.tls.ca_key, ca.key_pem);
  pki::writePublicFile(config.tls.cert, server.cert_pem);
  pki::writeSecretFile(config.tls.key, server.key_pem);
  pki::writeFileAtomically(home / "config.yaml", configFileHeader() + toYaml(config), 0644);

  std::cout << "kscribe home: " << home.string() << "\n"
            << "  CA:          " << config.tls.ca_cert.string() << "\n"
            << "  server cert: " << config.tls.cert.string() << " (SANs:";
  for (const auto& s : all_sans) std::cout << " " << s;
  std::cout << ")\n"
            << "  config:      " << (home / "config.yaml").string()
            << "\nnext: kscribe agent add NAME --home " << home.string() << "\n";
  return kExitOk;
}

}  // namespace

void addInit(CLI::App& app, Runner& run) {
  struct Opts {
    fs::path home;
    std::vector<std::string> sans;
    bool force = false;
  };
  auto opts = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand(
      "init", "Create the kscribe home: CA, proxy server certificate, config.yaml");
  cmd->add_option("--home", opts->home, "kscribe home (default $KSCRIBE_HOME, else ~/.kscribe)");
  cmd->add_option("--san", opts->sans,
                  "Extra subject alternative name for the server certificate (DNS name or IP; "
                  "repeatable)");
  cmd->add_flag("--force", opts->force, "Replace an existing home's CA, certificates and config");
  cmd->callback(
      [&run, opts] { run = [opts] { return runInit(opts->home, opts->sans, opts->force); }; });
}

}  // namespace kscribe::cli
