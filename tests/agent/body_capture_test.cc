#include "agent/body_capture.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "agent/api_request.h"
#include "redaction_test_util.h"

namespace kscribe {
namespace {

using testing::capture;
using testing::expectNoLeak;
using testing::readFixture;
using Json = nlohmann::json;

constexpr const char* kS1 = "FAKE-s3cr3t-VALUE-1";
constexpr const char* kS2 = "FAKE-s3cr3t-VALUE-2";
constexpr const char* kS3 = "FAKE-s3cr3t-VALUE-3";
const std::vector<std::string> kAll{kS1, kS2, kS3};

// A body exchanged on `target`, with everything else at defaults.
struct Exchange {
  ApiRequest request;
  BodyOptions options;
  Exchange(std::string_view method, std::string_view target, std::string content_type,
           bool is_request = false) {
    request = parseApiRequest(method, target);
    options.content_type = std::move(content_type);
    options.request = &request;
    options.is_request = is_request;
    options.status = is_request ? 0 : 200;
  }
  BodyCapture::Result run(std::string_view body, const std::vector<std::size_t>& chunks = {}) {
    return capture(body, options, chunks);
  }
};

std::string secretJson(const std::string& name, bool kind_last = false) {
  const std::string data = R"("data":{"password":")" + base64(kS1) + R"(","user":")" +
                           base64("admin") + R"("},"stringData":{"token":")" + kS2 + R"("})";
  const std::string meta =
      R"("metadata":{"name":")" + name +
      R"(","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"stringData\":{\"token\":\")" +
      kS3 + R"(\"}}\n"}})";
  if (kind_last) return R"({"apiVersion":"v1",)" + data + "," + meta + R"(,"kind":"Secret"})";
  return R"({"kind":"Secret","apiVersion":"v1",)" + meta + "," + data + R"(,"type":"Opaque"})";
}

void expectSecretShape(const BodyCapture::Result& r) {
  ASSERT_TRUE(r.body) << r.omitted_reason;
  const Json j = Json::parse(*r.body);
  EXPECT_EQ(j["data"]["password"], "[REDACTED]");
  EXPECT_EQ(j["data"]["user"], "[REDACTED]");
  EXPECT_EQ(j["stringData"]["token"], "[REDACTED]");
  EXPECT_EQ(j["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "[REDACTED]");
  EXPECT_EQ(j["metadata"]["name"], "db");
  EXPECT_TRUE(r.redacted);
  EXPECT_EQ(r.redactions, 4u);
}

TEST(Redaction, SingleSecretKeepsShape) {
  Exchange x("GET", "/api/v1/namespaces/a/secrets/db", "application/json");
  const auto r = x.run(secretJson("db"));
  expectNoLeak(r, kAll);
  expectSecretShape(r);
  EXPECT_EQ(r.encoding, "text");
}

TEST(Redaction, FixtureSecretJson) {
  Exchange x("GET", "/api/v1/namespaces/a/secrets/nameValue", "application/json");
  const auto r = x.run(readFixture("core.v1.Secret.json"));
  expectNoLeak(r, {"stringDataValue", "annotationsValue"});
  ASSERT_TRUE(r.body);
  const Json j = Json::parse(*r.body);
  EXPECT_EQ(j["data"]["dataKey"], "[REDACTED]");  // "Ag==" is too short to search for
  EXPECT_EQ(j["metadata"]["labels"]["labelsKey"], "labelsValue");
}

TEST(Redaction, SecretOnAnotherPathByKind) {
  // A client may send a Secret anywhere; the server rejects it, but the body was recorded.
  Exchange x("POST", "/api/v1/namespaces/a/configmaps", "application/json", true);
  const auto r = x.run(secretJson("db"));
  expectNoLeak(r, kAll);
  expectSecretShape(r);
}

TEST(Redaction, DataBeforeKindIsRedactedWhenKindArrives) {
  Exchange x("POST", "/api/v1/namespaces/a/configmaps", "application/json", true);
  const auto r = x.run(secretJson("db", /*kind_last=*/true));
  expectNoLeak(r, kAll);
  expectSecretShape(r);
}

TEST(Redaction, ConfigMapDataIsKept) {
  Exchange x("POST", "/api/v1/namespaces/a/configmaps", "application/json", true);
  const auto r = x.run(
      R"({"apiVersion":"v1","data":{"k":"plain-config"},"kind":"ConfigMap","metadata":{"name":"c","annotations":{"a":"b"}}})");
  ASSERT_TRUE(r.body);
  EXPECT_NE(r.body->find("plain-config"), std::string::npos);
  EXPECT_NE(r.body->find(R"("a":"b")"), std::string::npos);
  EXPECT_FALSE(r.redacted);
  const auto fixture = Exchange("GET", "/api/v1/namespaces/a/configmaps/c", "application/json")
                           .run(readFixture("core.v1.ConfigMap.json"));
  ASSERT_TRUE(fixture.body);
  EXPECT_EQ(Json::parse(*fixture.body), Json::parse(readFixture("core.v1.ConfigMap.json")));
}

TEST(Redaction, KindlessBodyOnSecretsPathIsASecret) {
  Exchange x("PATCH", "/api/v1/namespaces/a/secrets/db", "application/merge-patch+json", true);
  const auto r = x.run(std::string(R"({"data":{"password":")") + base64(kS1) +
                       R"("},"stringData":{"x":")" + kS2 + R"("}})");
  expectNoLeak(r, kAll);
  ASSERT_TRUE(r.body);
  EXPECT_EQ(*r.body, R"({"data":{"password":"[REDACTED]"},"stringData":{"x":"[REDACTED]"}})");
}

TEST(Redaction, SecretListTypedAndUnstructured) {
  const std::string typed = R"({"kind":"SecretList","apiVersion":"v1","metadata":{},"items":[)" +
                            secretJson("db") + "," + secretJson("db") + "]}";
  for (const char* target :
       {"/api/v1/namespaces/a/secrets", "/api/v1/secrets", "/api/v1/namespaces/a/configmaps"}) {
    Exchange x("GET", target, "application/json");
    const auto r = x.run(typed);
    expectNoLeak(r, kAll);
    EXPECT_EQ(r.redactions, 8u) << target;
  }
  // Items without kind, the list's kind last (as an unstructured list marshals, keys sorted).
  std::string kindless = R"({"apiVersion":"v1","items":[{"data":{"a":")" + base64(kS1) +
                         R"("},"metadata":{"annotations":{"x":")" + kS2 +
                         R"("}}}],"kind":"SecretList"})";
  for (const char* target :
       {"/api/v1/namespaces/a/secrets", "/api/v1/namespaces/a/configmaps", "/apis/x/v1/foos"}) {
    Exchange x("POST", target, "application/json", true);
    const auto r = x.run(kindless);
    expectNoLeak(r, kAll);
    ASSERT_TRUE(r.body) << target;
    EXPECT_EQ(Json::parse(*r.body)["items"][0]["data"]["a"], "[REDACTED]");
  }
  // A generic List whose items carry their own kinds.
  Exchange x("POST", "/api/v1/namespaces/a/configmaps", "application/json", true);
  const auto r = x.run(R"({"kind":"List","items":[{"kind":"ConfigMap","data":{"c":"keep-me"}},)" +
                       secretJson("db", true) + "]}");
  expectNoLeak(r, kAll);
  ASSERT_TRUE(r.body);
  EXPECT_NE(r.body->find("keep-me"), std::string::npos);
}

std::string watchStream() {
  std::string s;
  s += R"({"type":"ADDED","object":)" + secretJson("db") + "}\n";
  s += R"({"type":"MODIFIED","object":)" + secretJson("db", true) + "}\n";
  s +=
      R"({"type":"BOOKMARK","object":{"kind":"Secret","apiVersion":"v1","metadata":{"resourceVersion":"12"}}})"
      "\n";
  s += R"({"type":"DELETED","object":{"kind":"Secret","data":{"k":")" + base64(kS3) +
       R"("}}})"
       "\n";
  return s;
}

TEST(Redaction, WatchStreamEveryEventEveryChunking) {
  Exchange x("GET", "/api/v1/namespaces/a/secrets?watch=true", "application/json;stream=watch");
  const std::string body = watchStream();
  const auto whole = x.run(body);
  expectNoLeak(whole, kAll);
  ASSERT_TRUE(whole.body);
  // Four events, one per line, as on the wire.
  EXPECT_EQ(std::count(whole.body->begin(), whole.body->end(), '\n'), 3);
  for (std::size_t split = 1; split < body.size(); ++split) {
    const auto r = x.run(body, {split, body.size()});
    ASSERT_EQ(r.body, whole.body) << "split at " << split;
  }
  // The same stream on a path that does not say secrets: the kinds decide.
  Exchange y("GET", "/apis/example.com/v1/things?watch=1", "application/json;stream=watch");
  expectNoLeak(y.run(body, {7}), kAll);
}

TEST(Redaction, RandomChunkingGivesIdenticalOutput) {
  std::mt19937 rng(42);
  const std::string list = R"({"apiVersion":"v1","items":[)" + secretJson("db", true) + "," +
                           readFixture("core.v1.Pod.json") + "," + secretJson("db") +
                           R"(],"kind":"List"})";
  Exchange x("GET", "/api/v1/namespaces/a/configmaps", "application/json");
  const auto whole = x.run(list);
  expectNoLeak(whole, kAll);
  ASSERT_TRUE(whole.body);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::size_t> chunks;
    for (int i = 0; i < 16; ++i) chunks.push_back(1 + rng() % 300);
    ASSERT_EQ(x.run(list, chunks).body, whole.body) << round;
  }
}

TEST(Redaction, CreateAndUpdateRequestsAndResponses) {
  for (const char* method : {"POST", "PUT"}) {
    const std::string target =
        std::string("/api/v1/namespaces/a/secrets") + (std::string(method) == "PUT" ? "/db" : "");
    Exchange req(method, target, "application/json", true);
    const auto r = req.run(secretJson("db"));
    expectNoLeak(r, kAll);
    expectSecretShape(r);
    Exchange resp(method, target, "application/json");
    expectNoLeak(resp.run(secretJson("db", true)), kAll);
  }
}

TEST(Redaction, JsonPatch) {
  Exchange x("PATCH", "/api/v1/namespaces/a/secrets/db", "application/json-patch+json", true);
  const std::string body = R"([{"op":"replace","path":"/data/password","value":")" + base64(kS1) +
                           R"("},{"op":"add","path":"/stringData","value":{"t":")" + kS2 +
                           R"("}},{"op":"add","path":"/metadata/annotations/x","value":")" + kS3 +
                           R"("},{"op":"remove","path":"/data/old"}])";
  const auto r = x.run(body);
  expectNoLeak(r, kAll);
  ASSERT_TRUE(r.body);
  const Json j = Json::parse(*r.body);
  EXPECT_EQ(j[0]["path"], "/data/password");
  EXPECT_EQ(j[1]["value"]["t"], "[REDACTED]");
}

TEST(Redaction, MergeStrategicAndApplyPatches) {
  const std::string patch = R"({"metadata":{"annotations":{"note":")" + std::string(kS3) +
                            R"("}},"data":{"password":")" + base64(kS1) +
                            R"("},"stringData":{"t":")" + kS2 + R"("}})";
  for (const char* type : {"application/merge-patch+json", "application/strategic-merge-patch+json",
                           "application/apply-patch+yaml", "application/apply-patch+json"}) {
    Exchange x("PATCH", "/api/v1/namespaces/a/secrets/db?fieldManager=kubectl", type, true);
    const auto r = x.run(patch);
    expectNoLeak(r, kAll);
    ASSERT_TRUE(r.body) << type;
    EXPECT_EQ(r.redactions, 3u) << type;
    // The response is the whole Secret.
    Exchange resp("PATCH", "/api/v1/namespaces/a/secrets/db", "application/json");
    expectNoLeak(resp.run(secretJson("db")), kAll);
  }
  // Server-side apply as YAML (no parser): no body.
  Exchange y("PATCH", "/api/v1/namespaces/a/secrets/db", "application/apply-patch+yaml", true);
  const auto r =
      y.run(std::string("apiVersion: v1\nkind: Secret\nstringData:\n  t: ") + kS2 + "\n");
  EXPECT_FALSE(r.body);
  EXPECT_NE(r.omitted_reason.find("BODY NOT RECORDED"), std::string::npos);
  expectNoLeak(r, kAll);
}

TEST(Redaction, TableAndPartialObjectMetadata) {
  const std::string pom =
      R"({"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"db","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"stringData\":{\"t\":\")" +
      std::string(kS2) + R"(\"}}"}}})";
  const std::string table =
      R"({"kind":"Table","apiVersion":"meta.k8s.io/v1","columnDefinitions":[{"name":"Name","type":"string"}],"rows":[{"cells":["db","Opaque",2,"5m"],"object":)" +
      pom + R"(},{"cells":["db2","Opaque",1,"5m"],"object":)" + secretJson("db") + "}]}";
  Exchange x("GET", "/api/v1/namespaces/a/secrets?includeObject=Object",
             "application/json;as=Table;v=v1;g=meta.k8s.io");
  auto r = x.run(table);
  expectNoLeak(r, kAll);
  ASSERT_TRUE(r.body);
  EXPECT_EQ(Json::parse(*r.body)["rows"][0]["cells"][0], "db");

  const std::string list =
      R"({"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","items":[)" + pom + "]}";
  Exchange y("GET", "/api/v1/namespaces/a/secrets",
             "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io");
  r = y.run(list);
  expectNoLeak(r, kAll);
  ASSERT_TRUE(r.body);
  EXPECT_EQ(Json::parse(*r.body)["items"][0]["metadata"]["name"], "db");
}

TEST(Redaction, DryRunDeleteAndDeleteCollection) {
  Exchange dry("POST", "/api/v1/namespaces/a/secrets?dryRun=All", "application/json");
  EXPECT_TRUE(dry.request.dry_run);
  expectNoLeak(dry.run(secretJson("db")), kAll);
  Exchange del("DELETE", "/api/v1/namespaces/a/secrets/db", "application/json");
  expectSecretShape(del.run(secretJson("db")));
  Exchange coll("DELETE", "/api/v1/namespaces/a/secrets", "application/json");
  const auto r = coll.run(R"({"kind":"SecretList","apiVersion":"v1","items":[)" +
                          secretJson("db", true) + "]}");
  expectNoLeak(r, kAll);
  EXPECT_EQ(r.redactions, 4u);
  // A delete sends DeleteOptions; the answer may also be a Status.
  Exchange opts("DELETE", "/api/v1/namespaces/a/secrets/db", "application/json", true);
  const auto o =
      opts.run(R"({"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"})");
  ASSERT_TRUE(o.body);
  EXPECT_NE(o.body->find("Background"), std::string::npos);
}

TEST(Redaction, TokenRequestAndTokenReview) {
  Exchange tr("POST", "/api/v1/namespaces/a/serviceaccounts/default/token", "application/json");
  auto r = tr.run(readFixture("authentication.k8s.io.v1.TokenRequest.json"));
  expectNoLeak(r, {"tokenValue"});
  ASSERT_TRUE(r.body);
  EXPECT_EQ(Json::parse(*r.body)["status"]["token"], "[REDACTED]");
  Exchange rv("POST", "/apis/authentication.k8s.io/v1/tokenreviews", "application/json", true);
  r = rv.run(readFixture("authentication.k8s.io.v1.TokenReview.json"));
  expectNoLeak(r, {"tokenValue"});
  ASSERT_TRUE(r.body);
  EXPECT_EQ(Json::parse(*r.body)["spec"]["token"], "[REDACTED]");
  // Same tokens in protobuf and YAML: nothing kept.
  Exchange pb("POST", "/api/v1/namespaces/a/serviceaccounts/default/token",
              "application/vnd.kubernetes.protobuf");
  r = pb.run(readFixture("authentication.k8s.io.v1.TokenRequest.pb"));
  EXPECT_FALSE(r.body);
  expectNoLeak(r, {"tokenValue"});
  Exchange yaml("POST", "/apis/authentication.k8s.io/v1/tokenreviews", "application/yaml", true);
  r = yaml.run(readFixture("authentication.k8s.io.v1.TokenReview.yaml"));
  EXPECT_FALSE(r.body);
}

TEST(Redaction, KubeconfigLikeCredentials) {
  Exchange x("POST", "/apis/example.com/v1/namespaces/a/clusters", "application/json", true);
  const std::string body =
      R"({"kind":"Cluster","spec":{"kubeconfig":{"users":[{"name":"u","user":{"token":")" +
      std::string(kS1) + R"(","client-key-data":")" + base64(kS2) + R"(","password":")" + kS3 +
      R"("}}]}}})";
  const auto r = x.run(body);
  expectNoLeak(r, kAll);
  ASSERT_TRUE(r.body);
  EXPECT_NE(r.body->find(R"("name":"u")"), std::string::npos);
}

TEST(Redaction, ProtobufCborYaml) {
  // Protobuf Secret (the real encoding): no parser, no body.
  Exchange pb("GET", "/api/v1/namespaces/a/secrets/nameValue",
              "application/vnd.kubernetes.protobuf");
  auto r = pb.run(readFixture("core.v1.Secret.pb"));
  EXPECT_FALSE(r.body);
  EXPECT_EQ(r.wire_size, readFixture("core.v1.Secret.pb").size());
  expectNoLeak(r, {"stringDataValue", "annotationsValue"});
  // The same bytes on another path: the kind text gives it away.
  Exchange pb2("POST", "/api/v1/namespaces/a/configmaps", "application/vnd.kubernetes.protobuf",
               true);
  EXPECT_FALSE(pb2.run(readFixture("core.v1.Secret.pb")).body);
  // A Pod in protobuf is stored base64 with its content type.
  Exchange pod("GET", "/api/v1/namespaces/a/pods/p", "application/vnd.kubernetes.protobuf");
  r = pod.run(readFixture("core.v1.Pod.pb"));
  ASSERT_TRUE(r.body);
  EXPECT_EQ(r.encoding, "base64");
  EXPECT_EQ(*r.body, base64(readFixture("core.v1.Pod.pb")));
  EXPECT_EQ(r.content_type, "application/vnd.kubernetes.protobuf");
  // CBOR on the secrets path, and any CBOR a client sends: no body.
  Exchange cbor("GET", "/api/v1/namespaces/a/secrets", "application/cbor");
  EXPECT_FALSE(cbor.run("\xa1\x64kind\x66Other").body);
  Exchange cbor_req("POST", "/api/v1/namespaces/a/configmaps", "application/cbor", true);
  EXPECT_FALSE(cbor_req.run("\xa1\x64kind\x7f\x63Sec\x63ret\xff").body);
  // YAML: the real Secret fixture; a YAML-escaped kind; a harmless ConfigMap answer.
  Exchange yaml("GET", "/api/v1/namespaces/a/configmaps/c", "application/yaml");
  r = yaml.run(readFixture("core.v1.Secret.yaml"));
  EXPECT_FALSE(r.body);
  expectNoLeak(r, {"stringDataValue", "annotationsValue"});
  EXPECT_FALSE(yaml.run(std::string("kind: \"\\x53ecret\"\nstringData: {t: ") + kS1 + "}\n").body);
  r = yaml.run("kind: ConfigMap\ndata:\n  k: v\n");
  ASSERT_TRUE(r.body);
  EXPECT_EQ(r.encoding, "text");
}

TEST(Redaction, MislabelledBodiesStillRedacted) {
  // Found by the fuzzer: JSON declared as protobuf on a harmless path was kept as base64.
  Exchange x("GET", "/api/v1/namespaces/a/pods/p", "application/vnd.kubernetes.protobuf");
  const auto r =
      x.run(std::string(R"({"kind":"TokenRequest","status":{"token":")") + kS1 + R"("}})");
  expectNoLeak(r, kAll);
  ASSERT_TRUE(r.body);
  EXPECT_EQ(r.encoding, "text");
  // A YAML tag split across chunks is still seen.
  Exchange y("GET", "/api/v1/namespaces/a/configmaps/c", "application/yaml");
  const std::string yaml = "kind: !!binary U2VjcmV0\ndata: {}\n";
  for (std::size_t split = 1; split < yaml.size(); ++split) {
    EXPECT_FALSE(y.run(yaml, {split, yaml.size()}).body) << split;
  }
}

TEST(Redaction, EscapedAndCaseVariantKeys) {
  Exchange x("POST", "/api/v1/namespaces/a/configmaps", "application/json", true);
  auto r = x.run(std::string(R"({"data":{"p":")") + kS1 + R"("},"kind":"\u0053ecret"})");
  expectNoLeak(r, kAll);
  r = x.run(std::string(R"({"kind":"Secret","StringData":{"p":")") + kS1 + R"("}})");
  expectNoLeak(r, kAll);
  r = x.run(std::string(R"({"kind":"Secret","stringData":{"p":"FAKE-s3cr3t-\u0056ALUE-1"}})"));
  expectNoLeak(r, kAll);
  // A second kind could turn what was written plain into a Secret: refuse the body.
  r = x.run(std::string(R"({"kind":"ConfigMap","data":{"p":")") + kS1 + R"("},"kind":"Secret"})");
  EXPECT_FALSE(r.body);
  expectNoLeak(r, kAll);
}

TEST(Redaction, GzipDecompressedRedactedAndCapped) {
  Exchange x("GET", "/api/v1/namespaces/a/secrets", "application/json");
  x.options.content_encoding = "gzip";
  const std::string plain = R"({"kind":"SecretList","items":[)" + secretJson("db") + "]}";
  const std::string gz = testing::gzip(plain);
  for (std::size_t split : {std::size_t{1}, std::size_t{3}, gz.size()}) {
    const auto r = x.run(gz, {split});
    expectNoLeak(r, kAll);
    ASSERT_TRUE(r.body);
    EXPECT_EQ(r.wire_size, gz.size());
    EXPECT_EQ(Json::parse(*r.body)["items"][0]["metadata"]["name"], "db");
  }
  // A bomb: 50 MB of zeros inflating past a 1 MB cap.
  x.options.max_decompressed_size = 1'000'000;
  const auto bomb = x.run(testing::gzip(std::string(50'000'000, ' ')));
  EXPECT_FALSE(bomb.body);
  EXPECT_NE(bomb.omitted_reason.find("decompressed size"), std::string::npos);
  // Corrupt and cut-short compressed bodies.
  std::string corrupt = gz;
  corrupt[corrupt.size() / 2] ^= 0x55;
  corrupt[corrupt.size() / 2 + 1] ^= 0x55;
  EXPECT_FALSE(x.run(corrupt).body);
  EXPECT_FALSE(x.run(gz.substr(0, gz.size() / 2)).body);
}

TEST(Truncation, LongBodyCutWithMarkerAndFullWireSize) {
  Exchange x("GET", "/api/v1/namespaces/a/pods", "application/json");
  x.options.max_body_size = 1000;
  x.options.max_body_text = "1KB";
  std::string list = R"({"kind":"PodList","items":[)";
  for (int i = 0; i < 20; ++i) list += (i ? "," : "") + readFixture("core.v1.Pod.json");
  list += "]}";
  const auto r = x.run(list, {4096});
  ASSERT_TRUE(r.body);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.wire_size, list.size());
  EXPECT_TRUE(r.body->ends_with("[TRUNCATED at 1KB]"));
  EXPECT_EQ(r.body->size(), 1000 + std::string("[TRUNCATED at 1KB]").size());
  // Plain text too.
  Exchange t("GET", "/api/v1/namespaces/a/pods/p/log", "text/plain");
  t.options.max_body_size = 10;
  t.options.max_body_text = "10B";
  const auto log = t.run("0123456789abcdef");
  EXPECT_EQ(log.body, "0123456789[TRUNCATED at 10B]");
}

TEST(Truncation, CutSecretListStaysRedacted) {
  std::string list = R"({"kind":"SecretList","items":[)";
  for (int i = 0; i < 50; ++i) list += (i ? "," : "") + secretJson("db", i % 2);
  list += "]}";
  for (const char* target : {"/api/v1/namespaces/a/secrets", "/api/v1/namespaces/a/configmaps"}) {
    Exchange x("GET", target, "application/json");
    for (std::size_t cap : {50, 200, 333, 1000, 5000}) {
      x.options.max_body_size = cap;
      const auto r = x.run(list, {17});
      expectNoLeak(r, kAll);
      ASSERT_TRUE(r.body);
      EXPECT_TRUE(r.truncated);
    }
  }
}

TEST(Truncation, LateKindAfterTheCutStillRedacts) {
  // The data is inside the kept prefix, the kind that makes it a Secret far beyond the cut.
  Exchange x("POST", "/api/v1/namespaces/a/configmaps", "application/json", true);
  x.options.max_body_size = 100;
  const std::string body = std::string(R"({"data":{"p":")") + kS1 + R"("},"pad":")" +
                           std::string(5000, 'x') + R"(","kind":"Secret"})";
  const auto r = x.run(body, {13});
  expectNoLeak(r, kAll);
  ASSERT_TRUE(r.body);
  EXPECT_NE(r.body->find("[REDACTED]"), std::string::npos);
  EXPECT_TRUE(r.truncated);
}

TEST(Redaction, UnparseableOrIncompleteMaySecretIsNotStored) {
  Exchange x("GET", "/api/v1/namespaces/a/secrets/db", "application/json");
  const std::string body = secretJson("db");
  auto r = x.run(body.substr(0, body.size() / 2));  // the wire was cut
  EXPECT_FALSE(r.body);
  EXPECT_TRUE(r.incomplete);
  expectNoLeak(r, kAll);
  r = x.run("{\"data\": nope}");
  EXPECT_FALSE(r.body);
  // Data before a kind that never came because the stream broke: unresolved means redacted.
  Exchange y("POST", "/api/v1/namespaces/a/configmaps", "application/json", true);
  r = y.run(std::string(R"({"data":{"p":")") + kS1 + R"("},"ki)");
  EXPECT_FALSE(r.body);
  expectNoLeak(r, kAll);
  // A harmless broken response is kept, marked incomplete.
  Exchange z("GET", "/api/v1/namespaces/a/pods", "application/json");
  r = z.run(R"({"kind":"PodList","items":[{"metadata":{"name":"p")");
  ASSERT_TRUE(r.body);
  EXPECT_TRUE(r.incomplete);
}

TEST(Redaction, NonSecretBodiesAreKeptIntact) {
  Exchange x("GET", "/api/v1/namespaces/a/pods/p", "application/json");
  const std::string pod = readFixture("core.v1.Pod.json");
  const auto r = x.run(pod, {100});
  ASSERT_TRUE(r.body);
  EXPECT_FALSE(r.redacted);
  EXPECT_FALSE(r.truncated);
  EXPECT_EQ(Json::parse(*r.body), Json::parse(pod));
  EXPECT_EQ(r.wire_size, pod.size());
}

TEST(Redaction, RedactOffStoresAsIs) {
  Exchange x("GET", "/api/v1/namespaces/a/secrets/db", "application/json");
  x.options.redact_secrets = false;
  const auto r = x.run(secretJson("db"));
  ASSERT_TRUE(r.body);
  EXPECT_EQ(*r.body, secretJson("db"));
}

TEST(Redaction, RolloutRestartPatchDetected) {
  Exchange x("PATCH", "/apis/apps/v1/namespaces/a/deployments/web",
             "application/strategic-merge-patch+json", true);
  const auto r = x.run(
      R"({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-02-10T14:30:22Z"}}}}})",
      {5});
  EXPECT_TRUE(r.rollout_restart_patch);
  EXPECT_FALSE(x.run(R"({"spec":{"replicas":2}})").rollout_restart_patch);
}

TEST(Redaction, EmptyBody) {
  Exchange x("GET", "/api/v1/namespaces/a/secrets/db", "application/json");
  const auto r = x.run("");
  EXPECT_FALSE(r.body);
  EXPECT_EQ(r.wire_size, 0u);
  EXPECT_TRUE(r.omitted_reason.empty());
}

}  // namespace
}  // namespace kscribe

namespace kscribe {
namespace {

// The verbatim fast path: a body that the redactor would leave unchanged is stored as received
// (past the cap: its first max_body_size bytes, with the marker). Anything the redactor would
// change goes through the emitting pass; these compare both (BodyOptions::verbatim false forces
// the emitting pass).
std::string trimmed(std::string_view s) {
  while (!s.empty() && std::string_view(" \t\r\n").find(s.front()) != std::string_view::npos) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::string_view(" \t\r\n").find(s.back()) != std::string_view::npos) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

BodyCapture::Result emitting(Exchange x, std::string_view body,
                             const std::vector<std::size_t>& chunks = {}) {
  x.options.verbatim = false;
  x.options.request = &x.request;
  return x.run(body, chunks);
}

// The body minus the marker that ends a cut or incomplete body.
std::string withoutMarker(const std::string& body) {
  return body.substr(0, std::min(body.rfind("[TRUNCATED at "), body.rfind("[INCOMPLETE: ")));
}

void expectSameAsEmitting(Exchange& x, const std::string& body) {
  const std::size_t cap = x.options.max_body_size;
  const std::string marker = "[TRUNCATED at " + x.options.max_body_text + "]";
  for (const std::vector<std::size_t>& chunks : {std::vector<std::size_t>{}, {1}, {7, 64}}) {
    const auto fast = x.run(body, chunks);
    const auto slow = emitting(x, body, chunks);
    // The received text: whole, or cut at the cap.
    std::string received = trimmed(body);
    if (fast.truncated && !fast.redacted && !fast.incomplete) {
      received = body.substr(0, cap);
      received.erase(0, std::min(received.size(), received.find_first_not_of(" \t\r\n")));
      received += marker;
    }
    EXPECT_EQ(fast.omitted_reason, slow.omitted_reason) << body;
    EXPECT_EQ(fast.incomplete, slow.incomplete) << body;
    ASSERT_EQ(fast.body.has_value(), slow.body.has_value()) << body;
    if (body.size() > cap && fast.body && fast.body != slow.body && fast.body != received) {
      // Past the cap with something to redact (or invalid): the emitting pass wrote the kept
      // prefix, and what waited on a kind beyond it is redacted; it ends no later than the
      // emitting pass over the whole body.
      EXPECT_TRUE(fast.truncated) << body;
      EXPECT_TRUE(withoutMarker(*slow.body).starts_with(withoutMarker(*fast.body)))
          << *fast.body << "\n"
          << *slow.body;
      continue;
    }
    EXPECT_EQ(fast.redactions, slow.redactions) << body;
    EXPECT_EQ(fast.redacted, slow.redacted);
    if (fast.redactions > 0 || fast.incomplete) {
      EXPECT_EQ(fast.body, slow.body);  // redacted: the emitting pass wrote it
    } else if (fast.body != slow.body) {
      EXPECT_EQ(fast.body, received) << body;  // otherwise: the received text, or the same
    } else {
      EXPECT_EQ(fast.truncated, slow.truncated);
    }
  }
}

TEST(Verbatim, CleanBodyStoredAsReceived) {
  Exchange x("GET", "/api/v1/namespaces/a/pods/p", "application/json");
  const std::string pod = readFixture("core.v1.Pod.json");  // indented, ends with a newline
  for (const std::vector<std::size_t>& chunks : {std::vector<std::size_t>{}, {1}, {100}}) {
    const auto r = x.run(pod, chunks);
    ASSERT_TRUE(r.body);
    EXPECT_EQ(*r.body, trimmed(pod));
    EXPECT_FALSE(r.redacted);
    EXPECT_FALSE(r.truncated);
    EXPECT_FALSE(r.incomplete);
    EXPECT_EQ(r.encoding, "text");
    EXPECT_EQ(r.wire_size, pod.size());
  }
  // Escapes stay as sent (the writer escapes the body again as a JSON string).
  const std::string escaped = "\n {\"kind\":\"Pod\",\"metadata\":{\"name\":\"\\u0070\\/x\"}} \r\n";
  EXPECT_EQ(x.run(escaped).body, trimmed(escaped));
  expectSameAsEmitting(x, pod);
  // The declared size changes nothing.
  x.options.content_length = pod.size();
  EXPECT_EQ(x.run(pod).body, trimmed(pod));
}

TEST(Verbatim, SecretKindAfterDataIsRedacted) {
  for (const char* target : {"/api/v1/namespaces/a/configmaps", "/apis/example.com/v1/things",
                             "/api/v1/namespaces/a/secrets"}) {
    Exchange x("POST", target, "application/json", true);
    const std::string body = secretJson("db", /*kind_last=*/true);
    const auto r = x.run(body);
    expectNoLeak(r, kAll);
    expectSecretShape(r);
    expectSameAsEmitting(x, body);
    // Spaced out as a pretty printer would: still redacted.
    const std::string pretty = Json::parse(body).dump(2);
    expectNoLeak(x.run(pretty), kAll);
    expectSameAsEmitting(x, pretty);
  }
}

TEST(Verbatim, KindlessItemInSecretList) {
  const std::string item = std::string(R"({"metadata":{"name":"db"},"data":{"p":")") + base64(kS1) +
                           R"("},"stringData":{"q":")" + kS2 + R"("}})";
  for (const std::string& body :
       {R"({"kind":"SecretList","apiVersion":"v1","items":[)" + item + "]}",
        R"({"apiVersion":"v1","items":[)" + item + "," + item + R"(],"kind":"SecretList"})",
        R"({"kind":"List","items":[)" + item + "]}"}) {
    Exchange x("GET", "/apis/example.com/v1/things", "application/json");
    const auto r = x.run(body);
    expectNoLeak(r, kAll);
    ASSERT_TRUE(r.body) << body;
    EXPECT_TRUE(r.redacted);
    EXPECT_EQ(Json::parse(*r.body)["items"][0]["data"]["p"], "[REDACTED]");
    expectSameAsEmitting(x, body);
  }
}

TEST(Verbatim, DuplicateKindIsRefused) {
  for (bool is_request : {true, false}) {
    Exchange x(is_request ? "POST" : "GET", "/apis/example.com/v1/things", "application/json",
               is_request);
    for (const std::string& body :
         {std::string(R"({"kind":"ConfigMap","data":{"p":")") + kS1 + R"("},"kind":"Secret"})",
          std::string(R"({"kind":"Thing","data":{"p":")") + kS1 + R"("},"kind":"Thing"})",
          std::string(R"({"kind":"Thing","items":[{"data":{"p":")") + kS1 +
              R"("}}],"kind":"List"})"}) {
      const auto r = x.run(body);
      EXPECT_FALSE(r.body) << body;
      EXPECT_TRUE(r.incomplete);
      expectNoLeak(r, kAll);
      expectSameAsEmitting(x, body);
    }
  }
}

TEST(Verbatim, WatchStreamSeveralEvents) {
  Exchange x("GET", "/apis/example.com/v1/things?watch=1", "application/json;stream=watch");
  const std::string clean =
      "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Thing\",\"data\":{\"a\":\"1\"}}}\n"
      "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Thing\",\"data\":{\"a\":\"2\"}}}\n"
      "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Thing\"}}\n";
  const auto r = x.run(clean, {9});
  ASSERT_TRUE(r.body);
  EXPECT_EQ(*r.body, trimmed(clean));
  EXPECT_EQ(std::count(r.body->begin(), r.body->end(), '\n'), 2);
  expectSameAsEmitting(x, clean);
  // One Secret among them (its kind after its data): the whole stream goes the emitting way.
  const std::string mixed =
      clean + R"({"type":"ADDED","object":)" + secretJson("db", true) + "}\n" + clean;
  const auto m = x.run(mixed, {9});
  expectNoLeak(m, kAll);
  ASSERT_TRUE(m.body);
  EXPECT_TRUE(m.redacted);
  EXPECT_EQ(std::count(m.body->begin(), m.body->end(), '\n'), 6);
  expectSameAsEmitting(x, mixed);
}

TEST(Verbatim, InvalidJson) {
  Exchange pods("GET", "/api/v1/namespaces/a/pods", "application/json");
  for (const std::string& body : {std::string(R"({"kind":"PodList","items":[{"a":1})"),
                                  std::string(R"({"kind":"Pod"} trailing)"),
                                  std::string("{\"a\":\"\xff\"}"), std::string("[1,]")}) {
    const auto r = pods.run(body);
    ASSERT_TRUE(r.body) << body;
    EXPECT_TRUE(r.incomplete);
    EXPECT_TRUE(r.body->ends_with("[INCOMPLETE: not valid JSON]")) << *r.body;
    expectSameAsEmitting(pods, body);
  }
  Exchange secrets("GET", "/api/v1/namespaces/a/secrets/db", "application/json");
  const std::string body = secretJson("db");
  const auto r = secrets.run(body.substr(0, body.size() - 1));
  EXPECT_FALSE(r.body);
  expectNoLeak(r, kAll);
  expectSameAsEmitting(secrets, body.substr(0, body.size() - 1));
}

TEST(Verbatim, BodyAtTheCap) {
  Exchange x("GET", "/api/v1/namespaces/a/pods/p", "application/json");
  const std::string body = R"({"kind":"Pod","metadata":{"name":"p"}})";
  x.options.max_body_size = body.size();
  auto r = x.run(body, {5});
  ASSERT_TRUE(r.body);
  EXPECT_EQ(*r.body, body);
  EXPECT_FALSE(r.truncated);
  expectSameAsEmitting(x, body);
  // One byte over, as a trailing blank: the emitting pass drops the blank, nothing is cut.
  r = x.run(body + "\n", {5});
  EXPECT_EQ(r.body, body);
  EXPECT_FALSE(r.truncated);
  // One byte short: cut, with the marker.
  x.options.max_body_size = body.size() - 1;
  x.options.max_body_text = "cap";
  r = x.run(body, {5});
  ASSERT_TRUE(r.body);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(*r.body, body.substr(0, body.size() - 1) + "[TRUNCATED at cap]");
  expectSameAsEmitting(x, body);
  // A Secret at the cap, and one byte past it (its kind last, beyond the cut).
  Exchange s("POST", "/api/v1/namespaces/a/configmaps", "application/json", true);
  const std::string secret = secretJson("db", true);
  for (std::size_t cap : {secret.size(), secret.size() - 1, secret.size() / 2}) {
    s.options.max_body_size = cap;
    const auto c = s.run(secret, {3});
    expectNoLeak(c, kAll);
    expectSameAsEmitting(s, secret);
  }
}

TEST(Verbatim, StringsWithSpecialBytesAtEveryOffset) {
  // Each kind of special byte at each offset, in keys and values: the verbatim verdict matches
  // the emitting pass.
  Exchange x("GET", "/apis/example.com/v1/things", "application/json");
  const std::vector<std::string> specials{"\\\"",     "\\\\",         "\\u0041", "\\n",
                                          "\xc3\xa9", "\xe2\x82\xac", "\x01",    "\xff",
                                          "\xc3",     "\\x",          "\x7f",    "\xed\xa0\x80"};
  for (const std::string& special : specials) {
    for (std::size_t at = 0; at < 18; ++at) {
      const std::string text = std::string(at, 'a') + special + std::string(at % 5, 'b');
      for (const std::string& body :
           {R"({"kind":"Thing","v":")" + text + R"(","w":1})",
            R"({"kind":"Thing",")" + text + R"(":"v"})", R"({"kind":")" + text + R"("})",
            R"({"kind":"Thing","x":[")" + text + R"("]})"}) {
        expectSameAsEmitting(x, body);
      }
    }
  }
  // A credential key spelled with an escape is still a credential key.
  const std::string escaped_key = std::string(R"({"kind":"Thing","t\u006fken":")") + kS1 + "\"}";
  const auto r = x.run(escaped_key);
  expectNoLeak(r, kAll);
  EXPECT_TRUE(r.redacted);
}

TEST(Verbatim, PastTheCap) {
  // A clean body past the cap keeps its first max_body_size bytes as received, whether or not
  // its size was declared; a silent pass over all of it vouches for them.
  Exchange x("GET", "/api/v1/namespaces/a/pods", "application/json");
  x.options.max_body_size = 1000;
  std::string pods = R"({"kind": "PodList", "items": [)";
  for (int i = 0; i < 60; ++i) {
    pods += std::string(i ? ", " : "") + R"({"metadata": {"name": "pod-)" + std::to_string(i) +
            R"("}, "data": {"k": "v"}})";
  }
  const std::string clean = pods + "]}";
  const std::string expected = clean.substr(0, 1000) + "[TRUNCATED at 1MB]";
  for (bool sized : {false, true}) {
    x.options.content_length = sized ? std::optional<std::uint64_t>(clean.size()) : std::nullopt;
    for (const std::vector<std::size_t>& chunks : {std::vector<std::size_t>{}, {1}, {999}}) {
      const auto r = x.run(clean, chunks);
      ASSERT_TRUE(r.body);
      EXPECT_EQ(*r.body, expected);
      EXPECT_TRUE(r.truncated);
      EXPECT_FALSE(r.redacted);
      EXPECT_FALSE(r.incomplete);
      EXPECT_EQ(r.wire_size, clean.size());
    }
  }
  x.options.content_length.reset();
  expectSameAsEmitting(x, clean);
  // A credential far past the cap: the prefix has nothing to redact, the emitting pass writes it.
  const std::string token = pods + R"(, {"metadata": {"name": "t"}, "token": ")" + kS1 + "\"}]}";
  auto r = x.run(token, {64});
  expectNoLeak(r, kAll);
  ASSERT_TRUE(r.body);
  EXPECT_TRUE(r.truncated);
  expectSameAsEmitting(x, token);
  // Kindless items whose list says SecretList only at the end, far past the cap: every item's
  // data in the kept prefix is redacted.
  std::string items = R"({"apiVersion": "v1", "items": [)";
  for (int i = 0; i < 40; ++i) {
    items += std::string(i ? ", " : "") + R"({"metadata": {"name": "s)" + std::to_string(i) +
             R"("}, "data": {"p": ")" + base64(kS1) + R"("}})";
  }
  const std::string secrets = items + R"(], "kind": "SecretList"})";
  r = x.run(secrets, {7});
  expectNoLeak(r, kAll);
  ASSERT_TRUE(r.body);
  EXPECT_TRUE(r.redacted);
  EXPECT_TRUE(r.truncated);
  EXPECT_NE(r.body->find(R"("p":"[REDACTED]")"), std::string::npos) << *r.body;
  expectSameAsEmitting(x, secrets);
  // Blanks before the value, past the cap, in any chunking.
  for (std::size_t cap : {1u, 3u, 7u, 8u, 9u}) {
    Exchange n("GET", "/api/v1/namespaces/a/pods", "application/json");
    n.options.max_body_size = cap;
    for (const std::string& body : {std::string("\r\r\r\r\r\r\r1\r"), std::string("      {}  ")}) {
      const auto whole = n.run(body);
      for (const std::vector<std::size_t>& chunks : {std::vector<std::size_t>{1}, {2, 5}, {7}}) {
        const auto split = n.run(body, chunks);
        EXPECT_EQ(whole.body, split.body) << cap;
        EXPECT_EQ(whole.truncated, split.truncated) << cap;
      }
      expectSameAsEmitting(n, body);
    }
  }
  // Invalid past the cap: as the emitting pass, marked incomplete.
  const auto bad = x.run(clean.substr(0, clean.size() - 1) + "x");
  EXPECT_TRUE(bad.incomplete);
  expectSameAsEmitting(x, clean.substr(0, clean.size() - 1) + "x");
}

TEST(Verbatim, NumbersOnlyYajlTakes) {
  // simdjson refuses numbers beyond a double or a 64-bit integer; yajl takes them as text. Such
  // a body is vouched for by the yajl pass instead, with the same verdicts.
  Exchange x("GET", "/apis/example.com/v1/things", "application/json");
  const std::string clean =
      R"({"kind":"Thing","data":{"n":1e400,"big":123456789012345678901234567890,"s":"x"}})";
  const auto r = x.run(clean, {4});
  ASSERT_TRUE(r.body);
  EXPECT_EQ(*r.body, clean);
  EXPECT_FALSE(r.redacted);
  expectSameAsEmitting(x, clean);
  const std::string secret =
      std::string(R"({"data":{"n":1e400,"p":")") + base64(kS1) + R"("},"kind":"Secret"})";
  const auto s = x.run(secret, {4});
  expectNoLeak(s, kAll);
  EXPECT_TRUE(s.redacted);
  expectSameAsEmitting(x, secret);
}

TEST(Verbatim, NestingAtTheDepthLimit) {
  // 1,000 levels is the redactor's limit whichever parser validated the body.
  Exchange x("GET", "/apis/example.com/v1/things", "application/json");
  for (std::size_t depth : {999u, 1000u, 1001u, 1030u}) {
    const std::string body = std::string(depth, '[') + "1" + std::string(depth, ']');
    const auto r = x.run(body);
    if (depth <= 1000) {
      ASSERT_TRUE(r.body) << depth;
      EXPECT_EQ(*r.body, body);
    } else {
      EXPECT_TRUE(r.incomplete) << depth;
    }
    expectSameAsEmitting(x, body);
  }
}

TEST(Verbatim, Gzip) {
  Exchange x("GET", "/api/v1/namespaces/a/pods/p", "application/json");
  x.options.content_encoding = "gzip";
  const std::string pod = readFixture("core.v1.Pod.json");
  const std::string gz = testing::gzip(pod);
  x.options.content_length = gz.size();  // the compressed size: says nothing of the body's
  auto r = x.run(gz, {50});
  ASSERT_TRUE(r.body);
  EXPECT_EQ(*r.body, trimmed(pod));
  EXPECT_EQ(r.wire_size, gz.size());
  // Decompressed past the cap: its first 1,000 bytes as received.
  x.options.max_body_size = 1000;
  r = x.run(gz, {50});
  ASSERT_TRUE(r.body);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.body, pod.substr(0, 1000) + "[TRUNCATED at 1MB]");
  EXPECT_TRUE(emitting(x, gz, {50}).truncated);
  // A gzipped Secret on a path that does not say so.
  Exchange s("GET", "/apis/example.com/v1/things/db", "application/json");
  s.options.content_encoding = "gzip";
  const auto g = s.run(testing::gzip(secretJson("db", true)), {11});
  expectNoLeak(g, kAll);
  expectSecretShape(g);
}

}  // namespace
}  // namespace kscribe
