// SigV4 against the published AWS vectors: the aws-sig-v4-test-suite (credentials AKIDEXAMPLE,
// us-east-1, service "service", 2015-08-30T12:36:00Z) and the S3 documentation's examples
// (examplebucket, 2013-05-24). Inputs and expected outputs are reproduced here.
#include "agent/sigv4.h"
#include "agent/durable_file.h"

#include <gtest/gtest.h>

#include <chrono>

namespace kscribe::sigv4 {
namespace {

using std::chrono::sys_days;
using namespace std::chrono_literals;

const Credentials kSuite{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
const auto kSuiteTime = sys_days{std::chrono::year{2015} / 8 / 30} + 12h + 36min;
const std::string kSuiteCredential =
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, ";

Signature suiteSign(Request r) {
  r.headers.insert(r.headers.begin(), {"Host", "example.amazonaws.com"});
  return signHeaders(r, kSuite, "us-east-1", "service", kSuiteTime);
}

TEST(SigV4Suite, GetVanilla) {
  Signature s = suiteSign({"GET", "/", {}, {}});
  EXPECT_EQ(s.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
            "host;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
  EXPECT_EQ(s.authorization,
            kSuiteCredential +
                "SignedHeaders=host;x-amz-date, "
                "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST(SigV4Suite, GetVanillaQueryOrderKeyCase) {
  Signature s = suiteSign({"GET", "/", {{"Param2", "value2"}, {"Param1", "value1"}}, {}});
  EXPECT_EQ(s.canonical_request.substr(0, s.canonical_request.find("\nhost")),
            "GET\n/\nParam1=value1&Param2=value2");
  EXPECT_EQ(durable::sha256Hex(s.canonical_request),
            "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0");
  EXPECT_EQ(s.signature, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

TEST(SigV4Suite, GetVanillaEmptyQueryKey) {
  Signature s = suiteSign({"GET", "/", {{"Param1", "value1"}}, {}});
  EXPECT_EQ(s.signature, "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb");
}

TEST(SigV4Suite, PostXWwwFormUrlencoded) {
  Request r{"POST", "/", {}, {{"Content-Type", "application/x-www-form-urlencoded"}}};
  r.payload_hash = durable::sha256Hex("Param1=value1");
  Signature s = suiteSign(r);
  EXPECT_EQ(s.canonical_request,
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n"
            "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
            "content-type;host;x-amz-date\n"
            "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
  EXPECT_EQ(durable::sha256Hex(s.canonical_request),
            "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281");
  EXPECT_EQ(s.authorization,
            kSuiteCredential +
                "SignedHeaders=content-type;host;x-amz-date, "
                "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
}

TEST(SigV4Suite, GetHeaderValueTrim) {
  Signature s =
      suiteSign({"GET", "/", {}, {{"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}}});
  EXPECT_EQ(s.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n"
            "x-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(s.string_to_sign.substr(s.string_to_sign.rfind('\n') + 1),
            "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7");
  EXPECT_EQ(s.signature, "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");
}

TEST(SigV4Suite, GetHeaderKeyDuplicateAndMultiline) {
  Signature dup =
      suiteSign({"GET",
                 "/",
                 {},
                 {{"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}}});
  EXPECT_NE(dup.canonical_request.find("my-header1:value2,value2,value1\n"), std::string::npos);
  EXPECT_EQ(dup.signature, "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea");
  Signature multi = suiteSign({"GET", "/", {}, {{"My-Header1", "value1\n  value2\n     value3"}}});
  EXPECT_NE(multi.canonical_request.find("my-header1:value1 value2 value3\n"), std::string::npos);
}

TEST(SigV4Suite, GetUtf8AndUnreserved) {
  EXPECT_EQ(suiteSign({"GET", "/\xE1\x88\xB4", {}, {}}).signature,
            "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85");
  EXPECT_EQ(durable::sha256Hex(suiteSign({"GET", "/\xE1\x88\xB4", {}, {}}).canonical_request),
            "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102");
  EXPECT_EQ(suiteSign({"GET", "/", {{"\xE1\x88\xB4", "bar"}}, {}}).signature,
            "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04");
}

TEST(SigV4Suite, PostVanillaAndHeaderCases) {
  EXPECT_EQ(suiteSign({"POST", "/", {}, {}}).signature,
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
  EXPECT_EQ(suiteSign({"POST", "/", {{"Param1", "value1"}}, {}}).signature,
            "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11");
  EXPECT_EQ(suiteSign({"POST", "/", {}, {{"My-Header1", "value1"}}}).signature,
            "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c");
  EXPECT_EQ(suiteSign({"POST", "/", {}, {{"My-Header1", "VALUE1"}}}).signature,
            "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d");
}

TEST(SigV4Suite, PostStsHeaderBefore) {
  Credentials c = kSuite;
  c.session_token =
      "AQoDYXdzEPT//////////"
      "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfI"
      "eoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/"
      "kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ"
      "0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+"
      "scqKmlzm8FD"
      "rypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
  Request r{"POST", "/", {}, {{"Host", "example.amazonaws.com"}}};
  Signature s = signHeaders(r, c, "us-east-1", "service", kSuiteTime);
  EXPECT_EQ(r.headers.back(),
            (std::pair<std::string, std::string>{"x-amz-security-token", c.session_token}));
  EXPECT_EQ(s.string_to_sign.substr(s.string_to_sign.rfind('\n') + 1),
            "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6");
  EXPECT_EQ(s.authorization,
            kSuiteCredential +
                "SignedHeaders=host;x-amz-date;x-amz-security-token, "
                "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead");
}

// The S3 documentation's examples (secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY).
const Credentials kS3Doc{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
const auto kS3DocTime = sys_days{std::chrono::year{2013} / 5 / 24};

TEST(SigV4S3, GetObjectExample) {
  Request r{"GET",
            "/test.txt",
            {},
            {{"Host", "examplebucket.s3.amazonaws.com"},
             {"Range", "bytes=0-9"},
             {"x-amz-content-sha256", std::string(kEmptyPayloadHash)}}};
  Signature s = signHeaders(r, kS3Doc, "us-east-1", "s3", kS3DocTime);
  EXPECT_EQ(s.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  EXPECT_EQ(s.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4S3, PresignedUrlExample) {
  Request r{"GET", "/test.txt", {}, {{"Host", "examplebucket.s3.amazonaws.com"}}};
  Signature s = signQuery(r, kS3Doc, "us-east-1", "s3", kS3DocTime, std::chrono::seconds(86400));
  EXPECT_EQ(s.signature, "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
  EXPECT_EQ(
      canonicalQuery(r.query).rfind(
          "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F",
          0),
      0u);
  EXPECT_NE(canonicalQuery(r.query).find("&X-Amz-Signature=aeeed9bb"), std::string::npos);
}

TEST(SigV4, EncodingRules) {
  EXPECT_EQ(uriEncode("a b/c~d", true), "a%20b/c~d");
  EXPECT_EQ(uriEncode("a b/c", false), "a%20b%2Fc");
  EXPECT_EQ(uriEncode("+=&", false), "%2B%3D%26");
  EXPECT_EQ(canonicalQuery({{"uploads", ""}, {"b", "2"}, {"a", "x y"}}), "a=x%20y&b=2&uploads=");
  EXPECT_EQ(amzDate(kSuiteTime), "20150830T123600Z");
  // The derived key from the AWS documentation's example (secret wJalrXUtnFEMI/K7MDENG+bPx...,
  // 20150830/us-east-1/iam).
  EXPECT_EQ(toHex(signingKey(kSuite.secret_access_key, "20150830", "us-east-1", "iam")),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
}

}  // namespace
}  // namespace kscribe::sigv4
