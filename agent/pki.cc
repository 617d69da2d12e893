#include "agent/pki.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace kscribe::pki {
namespace fs = std::filesystem;

namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PKey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using Ext = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
void freeGeneralNames(GENERAL_NAMES* n) { GENERAL_NAMES_free(n); }
using Names = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES, freeGeneralNames>>;
using Bn = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;

[[noreturn]] void fail(const std::string& what) {
  std::string detail;
  if (unsigned long e = ERR_get_error(); e != 0) {
    std::array<char, 256> buf{};
    ERR_error_string_n(e, buf.data(), buf.size());
    detail = std::string(": ") + buf.data();
  }
  ERR_clear_error();
  throw std::runtime_error("pki: " + what + detail);
}

void check(int ok, const char* what) {
  if (ok != 1) fail(what);
}

PKey newKey() {
  PKey key(EVP_EC_gen("P-256"));
  if (!key) fail("cannot generate an EC P-256 key");
  return key;
}

std::string keyPem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  check(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr),
        "cannot encode private key");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  std::string out(data, static_cast<std::size_t>(n));
  // The memory BIO's buffer held the key; wipe it before freeing.
  OPENSSL_cleanse(data, static_cast<std::size_t>(n));
  return out;
}

std::string certPem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  check(PEM_write_bio_X509(bio.get(), cert), "cannot encode certificate");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

PKey parseKey(const std::string& pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PKey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) fail("cannot parse CA private key PEM");
  return key;
}

Cert parseCert(const std::string& pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) fail("cannot parse CA certificate PEM");
  return cert;
}

// A random positive 159-bit serial (RFC 5280 allows up to 20 octets; top bit clear keeps it
// positive in DER).
void setRandomSerial(X509* cert) {
  Bn bn(BN_new());
  if (!bn) fail("BN_new");
  check(BN_rand(bn.get(), 159, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY), "cannot draw a serial");
  if (!BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert))) fail("cannot set serial");
}

void setName(X509_NAME* name, const std::string& cn) {
  check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>("kscribe"), -1, -1, 0),
        "cannot set subject O");
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0),
        "cannot set subject CN");
}

Cert newCert(EVP_PKEY* key, const std::string& cn, std::chrono::days validity) {
  Cert cert(X509_new());
  if (!cert) fail("X509_new");
  check(X509_set_version(cert.get(), X509_VERSION_3), "cannot set version");
  setRandomSerial(cert.get());
  // Backdate a little so a peer whose clock is slightly behind accepts it.
  if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300)) fail("cannot set notBefore");
  if (!X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(validity.count()) * 86400))
    fail("cannot set notAfter");
  check(X509_set_pubkey(cert.get(), key), "cannot set public key");
  setName(X509_get_subject_name(cert.get()), cn);
  return cert;
}

// Adds an extension from its config-string form (fixed strings only, never user input).
void addExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  Ext ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext) fail(std::string("cannot build extension ") + OBJ_nid2sn(nid));
  check(X509_add_ext(cert, ext.get(), -1), "cannot add extension");
}

// SANs are built as GENERAL_NAMEs, not config strings, so a value can never inject another entry.
void addSans(X509* cert, const std::vector<std::string>& dns_or_ip, const std::string& uri) {
  Names names(sk_GENERAL_NAME_new_null());
  auto push = [&](int type, ASN1_STRING* value) {
    GENERAL_NAME* gn = GENERAL_NAME_new();
    if (!gn) fail("GENERAL_NAME_new");
    GENERAL_NAME_set0_value(gn, type, value);
    sk_GENERAL_NAME_push(names.get(), gn);
  };
  for (const auto& s : dns_or_ip) {
    if (isIpAddress(s)) {
      ASN1_OCTET_STRING* ip = a2i_IPADDRESS(s.c_str());
      if (!ip) fail("bad IP SAN " + s);
      push(GEN_IPADD, ip);
    } else {
      ASN1_IA5STRING* dns = ASN1_IA5STRING_new();
      if (!dns || !ASN1_STRING_set(dns, s.data(), static_cast<int>(s.size()))) fail("bad DNS SAN");
      push(GEN_DNS, dns);
    }
  }
  if (!uri.empty()) {
    ASN1_IA5STRING* u = ASN1_IA5STRING_new();
    if (!u || !ASN1_STRING_set(u, uri.data(), static_cast<int>(uri.size()))) fail("bad URI SAN");
    push(GEN_URI, u);
  }
  check(X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT),
        "cannot add subjectAltName");
}

void sign(X509* cert, EVP_PKEY* key) {
  if (X509_sign(cert, key, EVP_sha256()) <= 0) fail("cannot sign certificate");
}

CertKey issueLeaf(const CertKey& ca, const std::string& cn, const std::vector<std::string>& sans,
                  const std::string& uri, const char* eku, std::chrono::days validity) {
  Cert ca_cert = parseCert(ca.cert_pem);
  PKey ca_key = parseKey(ca.key_pem);
  if (X509_check_private_key(ca_cert.get(), ca_key.get()) != 1) fail("CA key does not match cert");
  PKey key = newKey();
  Cert cert = newCert(key.get(), cn, validity);
  check(X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get())),
        "cannot set issuer");
  addExt(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  addExt(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature");
  addExt(cert.get(), ca_cert.get(), NID_ext_key_usage, eku);
  addExt(cert.get(), ca_cert.get(), NID_subject_key_identifier, "hash");
  addExt(cert.get(), ca_cert.get(), NID_authority_key_identifier, "keyid:always");
  addSans(cert.get(), sans, uri);
  sign(cert.get(), ca_key.get());
  return CertKey{certPem(cert.get()), keyPem(key.get())};
}

void writeNew(const fs::path& path, const std::string& content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    throw std::runtime_error("cannot create " + path.string() + ": " + std::strerror(errno));
  }
  std::size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(err));
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(errno));
  }
}

}  // namespace

CertKey createCa(const std::string& common_name, std::chrono::days validity) {
  PKey key = newKey();
  Cert cert = newCert(key.get(), common_name, validity);
  check(X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())), "cannot set issuer");
  addExt(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  addExt(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  addExt(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  addExt(cert.get(), cert.get(), NID_authority_key_identifier, "keyid:always");
  sign(cert.get(), key.get());
  return CertKey{certPem(cert.get()), keyPem(key.get())};
}

CertKey issueServerCert(const CertKey& ca, const std::string& common_name,
                        const std::vector<std::string>& sans, std::chrono::days validity) {
  return issueLeaf(ca, common_name, sans, "", "serverAuth", validity);
}

CertKey issueClientCert(const CertKey& ca, const std::string& common_name,
                        const std::string& uri_san, std::chrono::days validity) {
  return issueLeaf(ca, common_name, {}, uri_san, "clientAuth", validity);
}

std::string spiffeId(const std::string& trust_domain, const std::string& agent_name) {
  return "spiffe://" + trust_domain + "/agent/" + agent_name;
}

bool isIpAddress(const std::string& s) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

std::vector<std::string> serverSans(const std::vector<std::string>& extra) {
  std::vector<std::string> out{"localhost", "127.0.0.1", "::1"};
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0 && host[0] != '\0') out.emplace_back(host);
  for (const auto& s : extra) out.push_back(s);
  std::vector<std::string> unique;
  for (auto& s : out) {
    if (s.empty()) continue;
    bool seen = false;
    for (const auto& u : unique) seen = seen || u == s;
    if (!seen) unique.push_back(s);
  }
  return unique;
}

void writeSecretFile(const fs::path& path, const std::string& content) {
  writeNew(path, content, 0600);
}

void writePublicFile(const fs::path& path, const std::string& content) {
  writeNew(path, content, 0644);
}

void writeFileAtomically(const fs::path& path, const std::string& content, unsigned mode) {
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove(tmp, ec);  // a leftover of a crashed run by the same pid
  writeNew(tmp, content, static_cast<mode_t>(mode));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    fs::remove(tmp, ec);
    throw std::runtime_error("cannot replace " + path.string() + ": " + std::strerror(err));
  }
  fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string randomToken(std::size_t n) {
  std::string raw(n, '\0');
  check(RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(n)),
        "RAND_bytes failed");
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : raw) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3f]);
  OPENSSL_cleanse(raw.data(), raw.size());
  return out;
}

}  // namespace kscribe::pki
