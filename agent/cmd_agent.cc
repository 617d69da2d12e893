// `kscribe agent add|list`: issue an agent's credentials (client certificate with its SPIFFE id,
// bearer token, kubeconfig) and register it with its selectors in config.yaml.
#include <yaml-cpp/yaml.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>
#include <memory>

#include "agent/cli.h"
#include "agent/config.h"
#include "agent/durable_file.h"
#include "agent/encoding.h"
#include "agent/pki.h"

namespace kscribe::cli {
namespace fs = std::filesystem;

namespace {

struct AddOpts {
  std::string name;
  fs::path home;
  bool force = false;
  Selectors selectors;
};

std::string validateName(const std::string& name) {
  if (name.empty()) return "is empty";
  if (name.size() > 128) return "is longer than 128 characters";
  // The name becomes a directory and part of a URI: a conservative alphabet, no leading dot.
  if (name.front() == '.' || name.front() == '-') return "must start with a letter, digit or '_'";
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return "may hold only letters, digits, '-', '_' and '.'";
    }
  }
  return "";
}

// kubectl's server URL for the proxy's listen address (a wildcard address means "this host").
std::string proxyUrl(const ListenConfig& listen) {
  std::string host = listen.address;
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  if (host == "::") host = "::1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return "https://" + host + ":" + std::to_string(listen.port);
}

std::string kubeconfig(const std::string& name, const std::string& server,
                       const std::string& ca_pem, const pki::CertKey& cert,
                       const std::string& token) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "apiVersion" << YAML::Value << "v1";
  out << YAML::Key << "kind" << YAML::Value << "Config";
  out << YAML::Key << "clusters" << YAML::Value << YAML::BeginSeq;
  out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << "kscribe";
  out << YAML::Key << "cluster" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "server" << YAML::Value << server;
  out << YAML::Key << "certificate-authority-data" << YAML::Value << base64(ca_pem);
  out << YAML::EndMap << YAML::EndMap << YAML::EndSeq;

  out << YAML::Key << "users" << YAML::Value << YAML::BeginSeq;
  out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << name;
  out << YAML::Key << "user" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "client-certificate-data" << YAML::Value << base64(cert.cert_pem);
  out << YAML::Key << "client-key-data" << YAML::Value << base64(cert.key_pem);
  out << YAML::EndMap << YAML::EndMap;
  out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << name + "-token";
  out << YAML::Key << "user" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "token" << YAML::Value << token;
  out << YAML::EndMap << YAML::EndMap << YAML::EndSeq;

  out << YAML::Key << "contexts" << YAML::Value << YAML::BeginSeq;
  for (const std::string& user : {name, name + "-token"}) {
    out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << user;
    out << YAML::Key << "context" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "cluster" << YAML::Value << "kscribe";
    out << YAML::Key << "user" << YAML::Value << user;
    out << YAML::EndMap << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::Key << "current-context" << YAML::Value << name;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

int runAdd(const AddOpts& o) {
  if (auto bad = validateName(o.name); !bad.empty()) {
    std::cerr << "kscribe agent add: NAME \"" << o.name << "\" " << bad << "\n";
    return kExitUsage;
  }
  for (const auto& label : o.selectors.k8s_pod_label) {
    if (label.find('=') == std::string::npos || label.front() == '=') {
      std::cerr << "kscribe agent add: --k8s-pod-label \"" << label << "\" is not key=value\n";
      return kExitUsage;
    }
  }
  const fs::path home = resolveHome(o.home);
  const fs::path config_file = home / "config.yaml";
  if (!fs::exists(config_file)) {
    std::cerr << "kscribe agent add: " << config_file.string()
              << " does not exist; run `kscribe init` first\n";
    return kExitUsage;
  }
  Config config = loadConfig(config_file, home);
  auto existing = std::find_if(config.identity.agents.begin(), config.identity.agents.end(),
                               [&](const AgentEntry& a) { return a.name == o.name; });
  const fs::path dir = home / "agents" / o.name;
  if ((existing != config.identity.agents.end() || fs::exists(dir)) && !o.force) {
    std::cerr << "kscribe agent add: agent \"" << o.name
              << "\" already exists; use --force to issue new credentials\n";
    return kExitUsage;
  }

  pki::CertKey ca{pki::readFile(config.tls.ca_cert), pki::readFile(config.tls.ca_key)};
  const std::string spiffe = pki::spiffeId(config.identity.trust_domain, o.name);
  const pki::CertKey cert = pki::issueClientCert(ca, o.name, spiffe);
  const std::string token = pki::randomToken(32);

  fs::create_directories(home / "agents");
  fs::permissions(home / "agents", fs::perms::owner_all, fs::perm_options::replace);
  if (o.force) fs::remove_all(dir);
  fs::create_directory(dir);
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
  try {
    pki::writePublicFile(dir / "agent.crt", cert.cert_pem);
    pki::writeSecretFile(dir / "agent.key", cert.key_pem);
    pki::writeSecretFile(dir / "token", token + "\n");
    pki::writeSecretFile(dir / "kubeconfig",
                         kubeconfig(o.name, proxyUrl(config.listen), ca.cert_pem, cert, token));

    AgentEntry entry{o.name, durable::sha256Hex(token), o.selectors};
    if (existing != config.identity.agents.end()) {
      *existing = entry;
    } else {
      config.identity.agents.push_back(entry);
    }
    const std::string yaml = configFileHeader() + toYaml(config);
    parseConfig(yaml, home);  // never write a config that would not load
    auto mode = static_cast<unsigned>(fs::status(config_file).permissions() & fs::perms::mask);
    pki::writeFileAtomically(config_file, yaml, mode);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(dir, ec);  // no half-issued credentials left behind
    throw;
  }

  std::cout << "agent " << o.name << ": " << spiffe << "\n"
            << "  certificate: " << (dir / "agent.crt").string() << "\n"
            << "  key:         " << (dir / "agent.key").string() << "\n"
            << "  token:       " << (dir / "token").string() << "\n"
            << "  kubeconfig:  " << (dir / "kubeconfig").string() << " (contexts " << o.name << ", "
            << o.name << "-token)\n"
            << "  selectors:   " << (o.selectors.empty() ? "none (unbound)" : "set") << "\n";
  return kExitOk;
}

std::string selectorSummary(const Selectors& s) {
  std::string out;
  auto add = [&out](const char* key, const auto& values) {
    for (const auto& v : values) {
      if (!out.empty()) out += " ";
      out += key;
      out += "=";
      if constexpr (std::is_same_v<std::decay_t<decltype(v)>, std::string>) {
        out += v;
      } else {
        out += std::to_string(v);
      }
    }
  };
  add("uid", s.uid);
  add("gid", s.gid);
  add("exe", s.exe);
  add("comm", s.comm);
  add("cgroup", s.cgroup);
  add("container_id", s.container_id);
  add("k8s.namespace", s.k8s_namespace);
  add("k8s.service_account", s.k8s_service_account);
  add("k8s.pod_label", s.k8s_pod_label);
  return out.empty() ? "-" : out;
}

int runList(const fs::path& home_flag, const fs::path& config_flag) {
  Config config = effectiveConfig(home_flag, config_flag);
  if (config.identity.agents.empty()) {
    std::cout << "no agents; add one with `kscribe agent add NAME`\n";
    return kExitOk;
  }
  for (const auto& a : config.identity.agents) {
    std::cout << a.name << "\t" << pki::spiffeId(config.identity.trust_domain, a.name) << "\t"
              << (a.token_sha256.empty() ? "no-token" : "token") << "\t"
              << selectorSummary(a.selectors) << "\n";
  }
  return kExitOk;
}

}  // namespace

void addAgent(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("agent", "Manage agent credentials");
  cmd->require_subcommand(1);

  auto opts = std::make_shared<AddOpts>();
  auto* add = cmd->add_subcommand(
      "add", "Issue an agent's certificate, token and kubeconfig and register it in config.yaml");
  add->add_option("NAME", opts->name, "Agent name (letters, digits, '-', '_', '.')")->required();
  add->add_option("--home", opts->home, "kscribe home (default $KSCRIBE_HOME, else ~/.kscribe)");
  add->add_flag("--force", opts->force, "Reissue credentials for an existing agent");
  auto& s = opts->selectors;
  // Each selector flag is repeatable and takes one value per occurrence.
  auto one = [](CLI::Option* opt) { opt->allow_extra_args(false); };
  one(add->add_option("--uid", s.uid, "Allowed user id"));
  one(add->add_option("--gid", s.gid, "Allowed group id"));
  one(add->add_option("--exe", s.exe, "Allowed executable path (glob)"));
  one(add->add_option("--comm", s.comm, "Allowed process name (comm)"));
  one(add->add_option("--cgroup", s.cgroup, "Allowed cgroup path (glob)"));
  one(add->add_option("--container-id", s.container_id, "Allowed container id"));
  one(add->add_option("--k8s-namespace", s.k8s_namespace, "Allowed pod namespace"));
  one(add->add_option("--k8s-service-account", s.k8s_service_account,
                      "Allowed pod service account"));
  one(add->add_option("--k8s-pod-label", s.k8s_pod_label, "Required pod label (key=value)"));
  add->callback([&run, opts] { run = [opts] { return runAdd(*opts); }; });

  struct ListOpts {
    fs::path home, config;
  };
  auto lopts = std::make_shared<ListOpts>();
  auto* list = cmd->add_subcommand("list", "List registered agents and their selectors");
  list->add_option("--home", lopts->home, "kscribe home (default $KSCRIBE_HOME, else ~/.kscribe)");
  list->add_option("--config", lopts->config, "Config file (default <home>/config.yaml)");
  list->callback([&run, lopts] { run = [lopts] { return runList(lopts->home, lopts->config); }; });
}

}  // namespace kscribe::cli
