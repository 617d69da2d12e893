// The audit line written straight as text must be byte for byte the sealed canonical dump of the
// same object through nlohmann, whatever the values hold.
#include "agent/audit_line.h"

#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>

#include "agent/audit_chain.h"
#include "agent/tier.h"

namespace kscribe {
namespace {

using json = nlohmann::json;

json nullIfEmpty(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

// The audit line's object for `rec` before sealing, built as a document: what the directly
// written line must equal once sealed.
json auditObject(const ExchangeRecord& rec, const std::string& timestamp) {
  const std::string session_id = rec.session ? rec.session->id : std::string();
  json audit;
  audit["timestamp"] = timestamp;
  audit["agent"] = nullIfEmpty(rec.agent);
  audit["spiffe_id"] = nullIfEmpty(rec.spiffe_id);
  audit["auth_method"] = nullIfEmpty(rec.auth_method);
  audit["connection_id"] = rec.connection_id;
  audit["workload"] = {{"kind", rec.key.workload_kind}, {"id", rec.key.workload}};
  audit["process"] = json(processObject(rec.process.get()));
  audit["method"] = rec.method;
  audit["path"] = rec.path;
  audit["query"] = nullIfEmpty(rec.api.query);
  audit["verb"] = rec.api.verb;
  audit["api_group"] = rec.api.api_group;
  audit["namespace"] = nullIfEmpty(rec.api.namespace_name);
  audit["resource"] = nullIfEmpty(rec.api.resource);
  audit["subresource"] = nullIfEmpty(rec.api.subresource);
  audit["name"] = nullIfEmpty(rec.api.name);
  audit["tier"] = static_cast<int>(rec.tier);
  audit["tier_name"] = tierName(rec.tier);
  audit["decision"] = rec.decision;
  audit["status"] = rec.status;
  audit["latency_us"] = rec.latency_us;
  audit["session_id"] = nullIfEmpty(session_id);
  audit["seq"] = rec.session ? json(rec.seq) : json(nullptr);
  audit["error"] = nullIfEmpty(rec.error);
  audit["message"] = nullIfEmpty(rec.message);
  return audit;
}

class RandomRecords {
 public:
  explicit RandomRecords(unsigned seed) : rng_(seed) {}

  // Empty, plain ASCII, valid UTF-8 of every length, controls and quotes, DEL, the seal's own
  // marker, or raw random bytes (mostly invalid UTF-8).
  std::string text() {
    static const std::vector<std::string> pieces = {"a",
                                                    "Z",
                                                    "/",
                                                    " ",
                                                    "\"",
                                                    "\\",
                                                    "\x7f",
                                                    "\x01",
                                                    "\n",
                                                    "\t",
                                                    "\x1f",
                                                    "\xc3\xa9",
                                                    "\xe2\x82\xac",
                                                    "\xef\xbf\xbf",
                                                    "\xf0\x9f\x98\x80",
                                                    "\xf4\x8f\xbf\xbf",
                                                    "\xed\x9f\xbf",
                                                    "\xc0\xaf",
                                                    "\xed\xa0\x80",
                                                    "\xe2\x82",
                                                    "\x80",
                                                    "\xff",
                                                    "\xf5",
                                                    "\"hash\":\"\"",
                                                    "genesis"};
    switch (rng_() % 6) {
      case 0:
        return "";
      case 1:
        return "plain-" + std::to_string(rng_() % 1000);
      case 2: {
        std::string s(rng_() % 24, '\0');
        for (auto& c : s) c = static_cast<char>(rng_() % 256);
        return s;
      }
      default: {
        std::string s;
        for (unsigned n = rng_() % 12; n > 0; --n) s += pieces[rng_() % pieces.size()];
        return s;
      }
    }
  }

  std::uint64_t number() {
    switch (rng_() % 4) {
      case 0:
        return 0;
      case 1:
        return std::numeric_limits<std::uint64_t>::max();
      default:
        return rng_() % 100000;
    }
  }

  ExchangeRecord record() {
    ExchangeRecord r;
    if (rng_() % 3) {
      auto s = std::make_shared<SessionInfo>();
      s->id = text();
      r.session = s;
    }
    r.seq = number();
    r.connection_id = number();
    r.agent = text();
    r.spiffe_id = text();
    r.auth_method = text();
    r.key = SessionKey{text(), text(), text()};
    switch (rng_() % 4) {
      case 0:
        break;  // no process at all
      case 1: {
        auto a = std::make_shared<proxy::Attribution>();
        a->status = rng_() % 2 ? proxy::Attribution::Status::kUnattributed
                               : proxy::Attribution::Status::kUnavailable;
        a->comm = text();  // not written for an unattributed process
        r.process = a;
        break;
      }
      default: {
        auto a = std::make_shared<proxy::Attribution>();
        a->status = proxy::Attribution::Status::kAttributed;
        a->tgid = static_cast<std::uint32_t>(number());
        a->tid = static_cast<std::uint32_t>(rng_());
        a->uid = static_cast<std::uint32_t>(rng_());
        a->gid = static_cast<std::uint32_t>(number());
        a->ppid = static_cast<std::uint32_t>(rng_());
        a->start_time = number();
        a->cgroup_id = number();
        a->process_exited = rng_() % 2;
        a->comm = text();
        a->exe = text();
        a->cmdline = "kubectl --token=FAKE";  // never written
        a->cgroup_path = text();
        a->container_runtime = text();
        a->container_id = text();
        a->pod_uid = text();
        r.process = a;
      }
    }
    r.method = text();
    r.path = text();
    r.api.query = text();
    r.api.verb = text();
    r.api.api_group = text();
    r.api.namespace_name = text();
    r.api.resource = text();
    r.api.subresource = text();
    r.api.name = text();
    r.tier = static_cast<Tier>(rng_() % 5);
    r.decision = rng_() % 2 ? "allowed" : text();
    r.status = static_cast<unsigned>(rng_() % 3 ? rng_() % 600 : rng_());
    r.latency_us = number();
    r.error = text();
    r.message = text();
    return r;
  }

 private:
  std::mt19937_64 rng_;
};

TEST(AuditLineTest, DirectLineEqualsSealedCanonicalDump) {
  RandomRecords random(11);
  std::string prev(kAuditGenesis);
  std::string scratch;
  std::stringstream chain;
  for (int i = 0; i < 20000; ++i) {
    const ExchangeRecord rec = random.record();
    const std::string ts = i % 7 ? "2026-02-10T14:30:22.001Z" : random.text();
    // A real prev_hash is hex or "genesis"; the writer must not depend on that.
    const std::string prev_used = i % 5 ? prev : random.text();
    nlohmann::json object = auditObject(rec, ts);
    const std::string expected = sealAuditLine(object, prev_used);
    std::string out = "kept>";  // appends, never overwrites
    const std::string hash = appendAuditLine(out, rec, ts, prev_used, scratch);
    ASSERT_EQ(out, "kept>" + expected) << "record " << i;
    ASSERT_EQ(hash, object["hash"].get<std::string>()) << "record " << i;
    if (prev_used == prev) {
      chain << expected << "\n";
      prev = hash;
    }
  }
  const auto result = verifyAuditChain(chain, {});
  EXPECT_TRUE(result.ok) << result.problem << " at line " << result.bad_line;
  EXPECT_EQ(result.head, prev);
}

TEST(AuditLineTest, ProcessJsonEqualsOrderedDump) {
  RandomRecords random(5);
  for (int i = 0; i < 5000; ++i) {
    const ExchangeRecord rec = random.record();
    std::string out;
    appendProcessJson(out, rec.process.get());
    ASSERT_EQ(out, processObject(rec.process.get())
                       .dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace))
        << i;
  }
}

}  // namespace
}  // namespace kscribe
