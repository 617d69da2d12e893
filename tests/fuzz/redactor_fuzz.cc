// libFuzzer target for the redactor (BodyCapture). Two modes, picked by the first byte:
//  - generated: the input drives a generator of Kubernetes-shaped bodies (Secrets in every
//    vector: single, lists typed and unstructured, watch streams, Tables, patches, tokens,
//    kubeconfig-like credentials; keys in any order, kinds escaped or late) with fake secret
//    values planted only where the redaction promise covers them, plus noise. Oracle: no planted
//    value appears in the stored body or marker in any form (plain, base64, base64 of base64).
//  - raw: the input is the body. Oracles: the result is the same for every chunking; and the
//    verbatim fast path (a clean body stored as received) agrees with the emitting pass (forced
//    by BodyOptions::verbatim false): same verdicts, and where the stored text differs, it is
//    the received body itself (cut at the cap) with nothing redacted, or past the cap the
//    redacted rendering of the kept prefix.
// Build: cmake -B build-fuzz -DKSCRIBE_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++
// -DCMAKE_C_COMPILER=clang
//        cmake --build build-fuzz --target redactor_fuzz
// Run:   build-fuzz/tests/fuzz/redactor_fuzz tests/fuzz/corpus/redactor -max_total_time=60
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/api_request.h"
#include "agent/body_capture.h"
#include "agent/encoding.h"

namespace {

using kscribe::BodyCapture;
using kscribe::BodyOptions;
using Json = nlohmann::ordered_json;

constexpr std::string_view kMark = "FAKE-s3cr3t-";

struct Generator {
  FuzzedDataProvider& fdp;
  bool secret_path;
  std::vector<std::string> planted;

  std::string secret() {
    std::string s = std::string(kMark) + "V" + std::to_string(planted.size()) + "-" +
                    std::to_string(fdp.ConsumeIntegral<std::uint16_t>());
    planted.push_back(s);
    return fdp.ConsumeBool() ? kscribe::base64(s) : s;
  }
  // Arbitrary text that never contains the planted marker.
  std::string noise() {
    std::string s = fdp.ConsumeRandomLengthString(24);
    for (std::size_t p; (p = s.find("FAKE")) != std::string::npos;) s[p] = 'f';
    // Valid UTF-8 (raw mode covers invalid bytes): ASCII, and sometimes a multi-byte character.
    for (char& c : s) c = static_cast<char>(static_cast<unsigned char>(c) & 0x7f);
    if (!s.empty() && s[0] == 'e') s += "\xc3\xa9";
    return s;
  }
  std::string noiseKey() {
    static const char* kKeys[] = {"name",  "type", "labels",  "spec",      "status", "x",     "uid",
                                  "kind2", "dat",  "objects", "immutable", "rows",   "object"};
    return fdp.ConsumeBool() ? std::string(kKeys[fdp.ConsumeIntegralInRange<int>(0, 12)])
                             : "n" + noise();
  }
  Json noiseValue(int depth) {
    switch (depth > 3 ? 0 : fdp.ConsumeIntegralInRange<int>(0, 5)) {
      case 0:
        return noise();
      case 1:
        return fdp.ConsumeIntegral<std::int32_t>();
      case 2:
        return fdp.ConsumeBool();
      case 3:
        return nullptr;
      case 4: {
        Json a = Json::array();
        for (int i = fdp.ConsumeIntegralInRange<int>(0, 3); i > 0; --i) {
          a.push_back(noiseValue(depth + 1));
        }
        return a;
      }
      default: {
        Json o = Json::object();
        for (int i = fdp.ConsumeIntegralInRange<int>(0, 3); i > 0; --i) {
          o[noiseKey()] = noiseValue(depth + 1);
        }
        return o;
      }
    }
  }
  Json secretMap() {
    Json m = Json::object();
    for (int i = fdp.ConsumeIntegralInRange<int>(1, 3); i > 0; --i) m[noise() + "k"] = secret();
    return m;
  }
  // A Secret; `kind_needed`: the context does not make a kindless object a Secret.
  Json secretObject(bool kind_needed) {
    std::vector<std::pair<std::string, Json>> fields;
    if (kind_needed || fdp.ConsumeBool()) fields.emplace_back("kind", "Secret");
    fields.emplace_back("apiVersion", "v1");
    Json meta = Json::object();
    meta["name"] = noise();
    if (fdp.ConsumeBool()) {
      Json ann = Json::object();
      ann["kubectl.kubernetes.io/last-applied-configuration"] =
          Json{{"kind", "Secret"}, {"stringData", secretMap()}}.dump(
              -1, ' ', false, Json::error_handler_t::replace);
      if (fdp.ConsumeBool()) ann[noise() + "a"] = secret();
      meta["annotations"] = ann;
    }
    fields.emplace_back("metadata", meta);
    if (fdp.ConsumeBool()) fields.emplace_back("data", secretMap());
    if (fdp.ConsumeBool()) fields.emplace_back("stringData", secretMap());
    if (fdp.ConsumeBool()) fields.emplace_back("type", noise());
    if (fdp.ConsumeBool()) fields.emplace_back(noiseKey() + "z", noiseValue(1));
    // Any key order: Go structs put kind first, unstructured objects sort keys.
    for (std::size_t i = fields.size(); i > 1; --i) {
      std::swap(fields[i - 1], fields[fdp.ConsumeIntegralInRange<std::size_t>(0, i - 1)]);
    }
    Json o = Json::object();
    for (auto& [k, v] : fields) o[k] = std::move(v);
    return o;
  }
  Json noiseObject() {
    Json o = Json::object();
    o["kind"] = fdp.ConsumeBool() ? "ConfigMap" : noise();
    o["data"] = Json{{"k", noise()}};
    o[noiseKey()] = noiseValue(1);
    return o;
  }
  Json list(bool typed_secret) {
    std::vector<Json> items;
    for (int i = fdp.ConsumeIntegralInRange<int>(0, 3); i > 0; --i) {
      if (!typed_secret && fdp.ConsumeBool()) {
        items.push_back(noiseObject());
      } else {
        items.push_back(secretObject(!typed_secret && !secret_path));
      }
    }
    Json o = Json::object();
    const bool kind_first = fdp.ConsumeBool();
    const char* kind = typed_secret ? "SecretList" : "List";
    if (kind_first) o["kind"] = kind;
    o["apiVersion"] = "v1";
    o["items"] = items;
    if (!kind_first) o["kind"] = kind;
    return o;
  }
  Json value() {
    switch (fdp.ConsumeIntegralInRange<int>(0, 9)) {
      case 0:
        return secretObject(!secret_path);
      case 1:
        return list(true);
      case 2:
        return list(false);
      case 3:
        return Json{{"type", "ADDED"}, {"object", secretObject(!secret_path)}};
      case 4: {
        Json row{{"cells", Json::array({noise(), 1})}, {"object", secretObject(!secret_path)}};
        return Json{{"kind", "Table"}, {"rows", Json::array({row})}};
      }
      case 5:
        return Json{{"kind", "TokenRequest"}, {"status", {{"token", secret()}}}};
      case 6:
        return Json{{"spec", {{"token", secret()}}}, {"kind", "TokenReview"}};
      case 7: {
        Json user{{"token", secret()}, {"client-key-data", secret()}, {"password", secret()}};
        return Json{{"users", Json::array({Json{{"name", noise()}, {"user", user}}})}};
      }
      case 8:
        if (secret_path) {
          return Json::array(
              {Json{{"op", "add"}, {"path", "/data/x"}, {"value", secret()}},
               Json{{"op", "add"}, {"path", "/stringData"}, {"value", secretMap()}}});
        }
        return noiseObject();
      default:
        return noiseObject();
    }
  }
};

bool leaks(const std::string& text, const std::string& secret) {
  if (text.find(secret) != std::string::npos) return true;
  for (const std::string& s : {secret, kscribe::base64(secret)}) {
    for (int shift = 0; shift < 3; ++shift) {
      const std::string enc =
          kscribe::base64(std::string(static_cast<std::size_t>(shift), 'x') + s);
      if (enc.size() > 12 && text.find(enc.substr(4, enc.size() - 8)) != std::string::npos) {
        return true;
      }
    }
  }
  return false;
}

BodyCapture::Result run(const std::string& body, const BodyOptions& options,
                        const std::vector<std::size_t>& chunks) {
  BodyCapture c(options);
  std::size_t pos = 0, k = 0;
  while (pos < body.size()) {
    std::size_t n =
        chunks.empty() ? body.size() : std::max<std::size_t>(chunks[k++ % chunks.size()], 1);
    n = std::min(n, body.size() - pos);
    c.feed(std::span<const char>(body.data() + pos, n));
    pos += n;
  }
  return c.finish();
}

void same(const BodyCapture::Result& a, const BodyCapture::Result& b, const std::string& body) {
  if (a.body != b.body || a.omitted_reason != b.omitted_reason || a.redactions != b.redactions) {
    std::fprintf(stderr, "chunking changed the result\nbody: %s\nwhole: %s %s\nsplit: %s %s\n",
                 body.c_str(), a.body ? a.body->c_str() : "-", a.omitted_reason.c_str(),
                 b.body ? b.body->c_str() : "-", b.omitted_reason.c_str());
    std::abort();
  }
}

std::string trimmed(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  return std::string(s.substr(first, s.find_last_not_of(" \t\r\n") + 1 - first));
}

// The body minus the marker that ends a cut or incomplete body.
std::string withoutMarker(const std::string& body) {
  return body.substr(0, std::min(body.rfind("[TRUNCATED at "), body.rfind("[INCOMPLETE: ")));
}

// The verbatim path against the emitting pass: a body stored as received is the received text
// (past the cap: its first max_body_size bytes and the marker) and had nothing to redact; past
// the cap with something to redact, the emitting pass over the kept prefix ends no later than
// over the whole body; otherwise both agree exactly.
void agreesWithEmitting(const std::string& body, BodyOptions options,
                        const BodyCapture::Result& fast) {
  options.verbatim = false;
  const auto slow = run(body, options, {});
  const std::size_t cap = options.max_body_size;
  std::string received = trimmed(body);
  if (fast.truncated && !fast.redacted && !fast.incomplete) {
    received = body.substr(0, cap);
    received.erase(0, std::min(received.size(), received.find_first_not_of(" \t\r\n")));
    received += "[TRUNCATED at " + options.max_body_text + "]";
  }
  bool ok = fast.omitted_reason == slow.omitted_reason && fast.incomplete == slow.incomplete &&
            fast.body.has_value() == slow.body.has_value();
  if (ok && fast.body && *fast.body != *slow.body) {
    if (body.size() > cap && *fast.body != received) {
      ok = fast.truncated && withoutMarker(*slow.body).starts_with(withoutMarker(*fast.body));
    } else {
      // Stored as received (a received text differs from the emitting pass only by its
      // whitespace and escapes): nothing was redacted, in either pass.
      ok = *fast.body == received && fast.redactions == 0 && slow.redactions == 0;
    }
  } else if (ok) {
    // Past the cap, the verbatim path counts only the redactions in the kept prefix; the
    // emitting pass also counts values that began in it and were redacted after the cut.
    ok = fast.truncated == slow.truncated &&
         (body.size() > cap ||
          (fast.redactions == slow.redactions && fast.redacted == slow.redacted));
  }
  if (!ok) {
    std::fprintf(stderr, "verbatim path disagrees\nbody: %s\nfast: %s %s\nslow: %s %s\n",
                 body.c_str(), fast.body ? fast.body->c_str() : "-", fast.omitted_reason.c_str(),
                 slow.body ? slow.body->c_str() : "-", slow.omitted_reason.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider fdp(data, size);
  static const char* kTargets[] = {"/api/v1/namespaces/a/secrets",
                                   "/api/v1/namespaces/a/secrets/s?watch=1",
                                   "/api/v1/namespaces/a/configmaps",
                                   "/apis/example.com/v1/things",
                                   "/apis/authentication.k8s.io/v1/tokenreviews",
                                   "/api/v1/namespaces/a/pods/p"};
  static const char* kTypes[] = {"application/json",
                                 "application/json;stream=watch",
                                 "application/merge-patch+json",
                                 "application/apply-patch+yaml",
                                 "",
                                 "application/vnd.kubernetes.protobuf"};
  const bool raw = fdp.ConsumeIntegralInRange<int>(0, 3) == 0;
  const kscribe::ApiRequest request =
      kscribe::parseApiRequest("GET", kTargets[fdp.ConsumeIntegralInRange<int>(0, 5)]);
  BodyOptions options;
  options.request = &request;
  options.content_type = kTypes[fdp.ConsumeIntegralInRange<int>(0, 5)];
  options.is_request = fdp.ConsumeBool();
  options.max_body_size = fdp.ConsumeBool() ? 1'000'000 : fdp.ConsumeIntegralInRange<int>(1, 600);
  options.max_body_text = "cap";
  std::vector<std::size_t> chunks;
  for (int i = fdp.ConsumeIntegralInRange<int>(1, 4); i > 0; --i) {
    chunks.push_back(fdp.ConsumeIntegralInRange<std::size_t>(1, 64));
  }

  if (raw) {
    const std::string body = fdp.ConsumeRemainingBytesAsString();
    const auto whole = run(body, options, {});
    same(whole, run(body, options, chunks), body);
    agreesWithEmitting(body, options, whole);
    return 0;
  }

  Generator gen{fdp, kscribe::pathMayHoldSecret(request), {}};
  std::string body;
  for (int i = fdp.ConsumeIntegralInRange<int>(1, 3); i > 0; --i) {
    const Json v = gen.value();
    const bool ascii = fdp.ConsumeBool();  // \u escapes for anything non-ASCII
    body += v.dump(fdp.ConsumeBool() ? 1 : -1, ' ', ascii, Json::error_handler_t::replace);
    body += '\n';
  }
  const auto whole = run(body, options, {});
  const auto split = run(body, options, chunks);
  same(whole, split, body);
  agreesWithEmitting(body, options, whole);
  // Noise may itself spell a fragment of a secret's encoding (the fuzzer is good at that): a
  // form counts as leaked only if the body without the planted values does not contain it.
  std::string unplanted = body;
  for (const std::string& secret : gen.planted) {
    for (const std::string& v : {secret, kscribe::base64(secret)}) {
      for (std::size_t p; (p = unplanted.find(v)) != std::string::npos;) {
        unplanted.replace(p, v.size(), "#");
      }
    }
  }
  for (const std::string& secret : gen.planted) {
    if (leaks(unplanted, secret)) continue;
    if ((whole.body && leaks(*whole.body, secret)) || leaks(whole.omitted_reason, secret)) {
      std::fprintf(stderr, "planted secret %s leaked\nbody: %s\nstored: %s\n", secret.c_str(),
                   body.c_str(), whole.body ? whole.body->c_str() : "(none)");
      std::abort();
    }
  }
  return 0;
}
