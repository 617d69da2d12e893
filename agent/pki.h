#pragma once
// kscribe's small PKI: a self-signed CA, the proxy's server certificate and one client certificate
// per agent (URI SAN spiffe://<trust domain>/agent/<name>). ECDSA P-256 via OpenSSL 3 EVP; PEM in
// and out. Secrets go to disk only through writeSecretFile (created 0600, never chmod-ed after).

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace kscribe::pki {

/// A certificate and its private key, both PEM.
struct CertKey {
  std::string cert_pem;
  std::string key_pem;
};

constexpr std::chrono::days kCaValidity{3650};
constexpr std::chrono::days kServerValidity{825};  // the longest validity clients commonly accept
constexpr std::chrono::days kClientValidity{825};

/// Creates a self-signed CA: CA:true (critical), keyUsage keyCertSign+cRLSign (critical).
CertKey createCa(const std::string& common_name, std::chrono::days validity = kCaValidity);

/// Issues a TLS server certificate signed by `ca`. Each SAN that parses as an IPv4/IPv6 address
/// becomes an IP SAN, anything else a DNS SAN. EKU serverAuth.
CertKey issueServerCert(const CertKey& ca, const std::string& common_name,
                        const std::vector<std::string>& sans,
                        std::chrono::days validity = kServerValidity);

/// Issues a TLS client certificate with one URI SAN (the SPIFFE id). EKU clientAuth.
CertKey issueClientCert(const CertKey& ca, const std::string& common_name,
                        const std::string& uri_san, std::chrono::days validity = kClientValidity);

/// The SPIFFE id kscribe gives an agent: spiffe://<trust_domain>/agent/<name>.
std::string spiffeId(const std::string& trust_domain, const std::string& agent_name);

/// localhost, 127.0.0.1, ::1 and this machine's host name, then `extra` (deduplicated, in order).
std::vector<std::string> serverSans(const std::vector<std::string>& extra);

/// True if `s` is a literal IPv4 or IPv6 address.
bool isIpAddress(const std::string& s);

/// Writes `content` to a new file created with O_CREAT|O_EXCL and mode 0600, then fsyncs it.
/// Throws std::runtime_error if the file exists or cannot be written.
void writeSecretFile(const std::filesystem::path& path, const std::string& content);
/// The same with mode 0644, for certificates and other public material.
void writePublicFile(const std::filesystem::path& path, const std::string& content);
/// Replaces `path` atomically: writes a temp file beside it (mode `mode`), fsyncs, renames, fsyncs
/// the directory.
void writeFileAtomically(const std::filesystem::path& path, const std::string& content,
                         unsigned mode);
/// Reads a whole file; throws std::runtime_error naming the path.
std::string readFile(const std::filesystem::path& path);

/// `n` random bytes from RAND_bytes, base64url without padding.
std::string randomToken(std::size_t n = 32);

}  // namespace kscribe::pki
