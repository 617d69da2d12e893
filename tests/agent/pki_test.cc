#include "agent/pki.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>

#include "agent/durable_file.h"

namespace kscribe::pki {
namespace {
namespace fs = std::filesystem;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using CertPtr = std::unique_ptr<X509, X509Free>;

CertPtr parse(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  CertPtr c(PEM_read_bio_X509(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  return c;
}

// Verifies `leaf` against `ca` alone, for `purpose` (X509_PURPOSE_SSL_SERVER/CLIENT); returns the
// X509_V_* result.
int verify(const std::string& ca_pem, const std::string& leaf_pem, int purpose) {
  CertPtr ca = parse(ca_pem);
  CertPtr leaf = parse(leaf_pem);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca.get());
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf.get(), nullptr);
  X509_STORE_CTX_set_purpose(ctx, purpose);
  int ok = X509_verify_cert(ctx);
  int err = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return err;
}

std::set<std::string> sans(const std::string& pem, int type) {
  CertPtr c = parse(pem);
  std::set<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(c.get(), NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
    GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type != type) continue;
    if (type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = gn->d.iPAddress;
      char text[INET6_ADDRSTRLEN] = {};
      ::inet_ntop(ASN1_STRING_length(ip) == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text,
                  sizeof text);
      out.insert(text);
    } else {
      const ASN1_STRING* s = gn->d.ia5;
      out.insert(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                             static_cast<std::size_t>(ASN1_STRING_length(s))));
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

class PkiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ca_ = new CertKey(createCa("test CA")); }
  static void TearDownTestSuite() { delete ca_; }
  static CertKey* ca_;
};
CertKey* PkiTest::ca_ = nullptr;

TEST_F(PkiTest, CaIsSelfSignedCaWithCertSign) {
  CertPtr c = parse(ca_->cert_pem);
  ASSERT_TRUE(c);
  EXPECT_EQ(X509_check_ca(c.get()), 1);
  EXPECT_TRUE(X509_get_key_usage(c.get()) & KU_KEY_CERT_SIGN);
  EXPECT_TRUE(X509_get_key_usage(c.get()) & KU_CRL_SIGN);
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(c.get()), X509_get_issuer_name(c.get())), 0);
  EXPECT_EQ(EVP_PKEY_get_base_id(X509_get0_pubkey(c.get())), EVP_PKEY_EC);
  EXPECT_EQ(verify(ca_->cert_pem, ca_->cert_pem, X509_PURPOSE_ANY), X509_V_OK);
  // Roughly ten years.
  int days = 0, secs = 0;
  ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(c.get()), X509_get0_notAfter(c.get()));
  EXPECT_NEAR(days, 3650, 1);
}

TEST_F(PkiTest, ServerCertChainsAndCarriesSans) {
  CertKey server = issueServerCert(*ca_, "proxy", serverSans({"extra.example", "10.9.8.7"}));
  EXPECT_EQ(verify(ca_->cert_pem, server.cert_pem, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  // serverAuth only: not usable as a client certificate.
  EXPECT_NE(verify(ca_->cert_pem, server.cert_pem, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  auto dns = sans(server.cert_pem, GEN_DNS);
  EXPECT_TRUE(dns.contains("localhost"));
  EXPECT_TRUE(dns.contains("extra.example"));
  auto ips = sans(server.cert_pem, GEN_IPADD);
  EXPECT_TRUE(ips.contains("127.0.0.1"));
  EXPECT_TRUE(ips.contains("::1"));
  EXPECT_TRUE(ips.contains("10.9.8.7"));
  CertPtr c = parse(server.cert_pem);
  EXPECT_EQ(X509_check_host(c.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(c.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_ca(c.get()), 0);
  EXPECT_TRUE(X509_get_extended_key_usage(c.get()) & XKU_SSL_SERVER);
  EXPECT_FALSE(X509_get_extended_key_usage(c.get()) & XKU_SSL_CLIENT);
}

TEST_F(PkiTest, ClientCertCarriesSpiffeIdAndClientAuth) {
  const std::string id = spiffeId("example.org", "bot-1");
  EXPECT_EQ(id, "spiffe://example.org/agent/bot-1");
  CertKey client = issueClientCert(*ca_, "bot-1", id);
  EXPECT_EQ(verify(ca_->cert_pem, client.cert_pem, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_NE(verify(ca_->cert_pem, client.cert_pem, X509_PURPOSE_SSL_SERVER), X509_V_OK);
  EXPECT_EQ(sans(client.cert_pem, GEN_URI), std::set<std::string>{id});
  EXPECT_TRUE(sans(client.cert_pem, GEN_DNS).empty());
}

TEST_F(PkiTest, OtherCaDoesNotVerify) {
  CertKey other = createCa("other CA");
  CertKey client = issueClientCert(other, "x", spiffeId("d", "x"));
  EXPECT_EQ(verify(ca_->cert_pem, client.cert_pem, X509_PURPOSE_SSL_CLIENT),
            X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}

TEST_F(PkiTest, SerialsAreRandomAndKeysDiffer) {
  CertKey a = issueClientCert(*ca_, "a", "spiffe://d/agent/a");
  CertKey b = issueClientCert(*ca_, "a", "spiffe://d/agent/a");
  CertPtr ca = parse(a.cert_pem), cb = parse(b.cert_pem);
  EXPECT_NE(ASN1_INTEGER_cmp(X509_get0_serialNumber(ca.get()), X509_get0_serialNumber(cb.get())),
            0);
  EXPECT_NE(a.key_pem, b.key_pem);
  EXPECT_NE(a.key_pem.find("BEGIN PRIVATE KEY"), std::string::npos);
}

TEST_F(PkiTest, MismatchedCaKeyIsRefused) {
  CertKey other = createCa("other");
  CertKey broken{ca_->cert_pem, other.key_pem};
  EXPECT_THROW(issueClientCert(broken, "x", "spiffe://d/agent/x"), std::runtime_error);
  EXPECT_THROW(issueClientCert(CertKey{"junk", "junk"}, "x", "spiffe://d/agent/x"),
               std::runtime_error);
}

TEST(PkiFiles, SecretFilesAre0600AndNeverOverwritten) {
  fs::path dir = fs::temp_directory_path() / ("pki_test_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  // A permissive umask must not widen a secret file.
  mode_t old = ::umask(0);
  writeSecretFile(dir / "k", "secret");
  writePublicFile(dir / "c", "public");
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat((dir / "k").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir / "c").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_THROW(writeSecretFile(dir / "k", "again"), std::runtime_error);
  EXPECT_EQ(readFile(dir / "k"), "secret");
  // A symlink planted at the path is not followed.
  fs::create_symlink(dir / "target", dir / "link");
  EXPECT_THROW(writeSecretFile(dir / "link", "x"), std::runtime_error);
  EXPECT_FALSE(fs::exists(dir / "target"));

  writeFileAtomically(dir / "c", "replaced", 0640);
  EXPECT_EQ(readFile(dir / "c"), "replaced");
  ASSERT_EQ(::stat((dir / "c").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  fs::remove_all(dir);
}

TEST(PkiToken, RandomBase64UrlAndDigest) {
  std::string a = randomToken(32), b = randomToken(32);
  EXPECT_EQ(a.size(), 43u);  // ceil(32 * 8 / 6), no padding
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  EXPECT_EQ(durable::sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(PkiSans, IpDetection) {
  EXPECT_TRUE(isIpAddress("127.0.0.1"));
  EXPECT_TRUE(isIpAddress("::1"));
  EXPECT_TRUE(isIpAddress("fe80::1"));
  EXPECT_FALSE(isIpAddress("localhost"));
  EXPECT_FALSE(isIpAddress("1.2.3"));
  auto s = serverSans({"localhost", "x.example"});
  EXPECT_EQ(s[0], "localhost");
  EXPECT_EQ(std::count(s.begin(), s.end(), "localhost"), 1);
  EXPECT_EQ(s.back(), "x.example");
}

}  // namespace
}  // namespace kscribe::pki
