// The recorder driven through the Tap interface with an injected clock: sessions, audit chain,
// manifests, crash recovery and record failures. No sockets, no sleeps.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "agent/api_request.h"
#include "agent/audit_chain.h"
#include "agent/body_capture.h"
#include "agent/durable_file.h"
#include "agent/metrics.h"
#include "agent/recorder.h"

namespace kscribe {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

class FakeClock : public Clock {
 public:
  std::chrono::steady_clock::time_point now() override {
    std::lock_guard lk(mu_);
    return mono_;
  }
  std::chrono::system_clock::time_point wallNow() override {
    std::lock_guard lk(mu_);
    return wall_;
  }
  void advance(std::chrono::milliseconds d) {
    std::lock_guard lk(mu_);
    mono_ += d;
    wall_ += d;
  }

 private:
  std::mutex mu_;
  std::chrono::steady_clock::time_point mono_{std::chrono::hours(1000)};
  std::chrono::system_clock::time_point wall_{std::chrono::seconds(1'770'733'822)};
};

std::vector<std::string> readLines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

void writeLines(const fs::path& p, const std::vector<std::string>& lines) {
  std::ofstream out(p, std::ios::trunc);
  for (auto& l : lines) out << l << "\n";
}

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs the schema validator (python3-jsonschema) over what a test produced.
void expectValid(const fs::path& sessions, const fs::path& audit) {
  const char* py = std::getenv("KSCRIBE_PYTHON");
  std::string cmd = std::string(py ? py : "/usr/bin/python3") + " " + KSCRIBE_SOURCE_DIR +
                    "/tests/integration/kscribe_schemas.py --sessions '" + sessions.string() +
                    "' --audit '" + audit.string() + "' >/dev/null";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

// main's BodyCapture was a stub that keeps no body until the redactor landed; body assertions
// run only once a body can be kept.
bool redactorKeepsBodies() {
  ApiRequest api = parseApiRequest("GET", "/api/v1/pods");
  BodyCapture c(BodyOptions{1000, "1KB", true, 1000000, "application/json", "", &api, false, 200,
                            std::nullopt});
  c.feed(std::string_view(R"({"kind":"PodList","items":[]})"));
  return c.finish().body.has_value();
}

proxy::ConnectionInfo connection(std::string agent, std::string pod_uid = "",
                                 std::uint32_t tgid = 4242) {
  static std::atomic<std::uint64_t> next_id{1};
  proxy::ConnectionInfo c;
  c.id = next_id++;
  c.agent = std::move(agent);
  c.spiffe_id = "spiffe://kscribe.local/agent/" + c.agent;
  c.auth_method = "certificate";
  auto a = std::make_shared<proxy::Attribution>();
  a->status = proxy::Attribution::Status::kAttributed;
  a->tgid = tgid;
  a->tid = tgid;
  a->uid = 1000;
  a->gid = 1000;
  a->comm = "kubectl";
  a->exe = "/usr/bin/kubectl";
  a->cmdline = "kubectl get pods --token=FAKE-TOKEN-must-not-appear";
  a->start_time = 123456;
  a->cgroup_path = pod_uid.empty() ? "/user.slice/user-1000.slice/session-1.scope"
                                   : "/kubepods/pod" + pod_uid + "/abc";
  a->pod_uid = pod_uid;
  c.attribution = a;
  return c;
}

proxy::RequestHead request(std::string method, std::string target, std::string content_type = "") {
  proxy::RequestHead h;
  h.method = std::move(method);
  h.target = std::move(target);
  if (!content_type.empty()) h.headers.emplace_back("Content-Type", content_type);
  return h;
}

class RecorderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kscribe-recorder-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    recorder_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  RecorderOptions options() {
    RecorderOptions o;
    o.storage = dir_ / "sessions";
    o.audit_path = dir_ / "audit" / "audit.jsonl";
    o.idle_timeout = 30s;
    o.max_body_size = 1000;
    o.max_body_text = "1KB";
    o.sync_interval = 50ms;
    return o;
  }

  Recorder& start(RecorderOptions o) {
    recorder_ = std::make_unique<Recorder>(std::move(o), clock_);
    recorder_->onSessionClosed([this](const PublishedSession& c) {
      std::lock_guard lk(mu_);
      closed_.push_back(c);
    });
    recorder_->start();
    return *recorder_;
  }
  Recorder& start() { return start(options()); }

  // One complete exchange.
  void exchange(const proxy::ConnectionInfo& c, const std::string& method,
                const std::string& target, unsigned status = 200, std::string req_body = "",
                std::string resp_body = R"({"kind":"PodList","items":[]})") {
    auto b =
        recorder_->begin(c, request(method, target, req_body.empty() ? "" : "application/json"));
    ASSERT_TRUE(b.tap) << "refused: " << (b.refusal ? b.refusal->message : "");
    if (!req_body.empty()) b.tap->requestBody(req_body);
    b.tap->requestEnd();
    proxy::ResponseHead rh;
    rh.status = status;
    rh.headers.emplace_back("Content-Type", "application/json");
    b.tap->responseHead(rh);
    b.tap->responseBody(resp_body);
    clock_.advance(2ms);
    b.tap->end();
  }

  std::vector<PublishedSession> closed() {
    std::lock_guard lk(mu_);
    return closed_;
  }

  json manifest(const PublishedSession& c) { return json::parse(readFile(c.manifest)); }

  fs::path dir_;
  FakeClock clock_;
  std::unique_ptr<Recorder> recorder_;
  std::mutex mu_;
  std::vector<PublishedSession> closed_;
};

TEST_F(RecorderTest, SessionOpensExtendsAndClosesOnIdle) {
  Recorder& r = start();
  auto c = connection("alpha");
  exchange(c, "GET", "/api/v1/namespaces/payments/pods?limit=500");
  clock_.advance(20s);
  exchange(c, "POST", "/api/v1/namespaces/payments/configmaps", 201,
           R"({"kind":"ConfigMap","metadata":{"name":"x"},"data":{"k":"v"}})");
  clock_.advance(29s);  // 29 s after the last request: still open
  r.tick();
  r.flush();
  EXPECT_EQ(r.openSessions(), 1u);
  EXPECT_TRUE(closed().empty());
  clock_.advance(1s);
  r.tick();
  r.flush();
  EXPECT_EQ(r.openSessions(), 0u);
  auto done = closed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].agent, "alpha");
  EXPECT_EQ(done[0].close_reason, "idle timeout");
  EXPECT_EQ(done[0].date, "2026-02-10");

  auto lines = readLines(done[0].jsonl);
  ASSERT_EQ(lines.size(), 2u);
  json l1 = json::parse(lines[0]), l2 = json::parse(lines[1]);
  EXPECT_EQ(l1["seq"], 1);
  EXPECT_EQ(l2["seq"], 2);
  EXPECT_EQ(l1["path"], "/api/v1/namespaces/payments/pods");
  EXPECT_EQ(l1["query"], "limit=500");
  EXPECT_EQ(l1["tier"], 0);
  EXPECT_EQ(l1["request_body"], nullptr);
  if (redactorKeepsBodies()) {
    EXPECT_EQ(l1["response_body"], R"({"kind":"PodList","items":[]})");
    EXPECT_EQ(l2["request_body"],
              R"({"kind":"ConfigMap","metadata":{"name":"x"},"data":{"k":"v"}})");
  } else {
    EXPECT_EQ(l1["response_body"], nullptr);
    EXPECT_NE(l1["response_body_omitted"], nullptr);
  }
  EXPECT_EQ(l1["response_body_size"], 29);
  EXPECT_EQ(l1["latency_us"], 2000);
  EXPECT_EQ(l1["process"]["tgid"], 4242);
  EXPECT_EQ(l1["timestamp"], "2026-02-10T14:30:22.000Z");
  EXPECT_EQ(l2["tier"], 2);
  EXPECT_EQ(l2["status"], 201);

  json m = manifest(done[0]);
  EXPECT_EQ(m["request_count"], 2);
  EXPECT_EQ(m["close_reason"], "idle timeout");
  EXPECT_EQ(m["tiers_seen"], json::array({0, 2}));
  EXPECT_EQ(m["highest_tier"], 2);
  EXPECT_EQ(m["started"], "2026-02-10T14:30:22.000Z");
  EXPECT_EQ(m["ended"], "2026-02-10T14:30:42.004Z");
  EXPECT_EQ(m["identity"]["workload_kind"], "cgroup");
  std::error_code ec;
  EXPECT_EQ(m["sha256"], durable::sha256File(done[0].jsonl, ec));
  EXPECT_EQ(m["bytes"], fs::file_size(done[0].jsonl));
  EXPECT_FALSE(fs::exists(done[0].jsonl.parent_path() / (done[0].session_id + ".open.json")));

  // The next request opens a new session.
  clock_.advance(1s);
  exchange(c, "GET", "/api/v1/pods");
  r.shutdown();
  done = closed();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_NE(done[1].session_id, done[0].session_id);
  EXPECT_EQ(done[1].close_reason, "shutdown");

  // Nothing kscribe wrote holds the command line (it can carry credentials).
  for (auto& p : fs::recursive_directory_iterator(dir_)) {
    if (p.is_regular_file()) {
      EXPECT_EQ(readFile(p.path()).find("FAKE-TOKEN"), std::string::npos) << p.path();
    }
  }
  expectValid(dir_ / "sessions", dir_ / "audit" / "audit.jsonl");
}

TEST_F(RecorderTest, StreamingWatchKeepsSessionOpen) {
  Recorder& r = start();
  auto c = connection("watcher");
  auto b = r.begin(c, request("GET", "/api/v1/namespaces/default/pods?watch=true"));
  ASSERT_TRUE(b.tap);
  proxy::ResponseHead rh;
  rh.status = 200;
  b.tap->responseHead(rh);
  for (int i = 0; i < 10; ++i) {
    clock_.advance(60s);  // twice the idle timeout, ten times over
    b.tap->responseBody(std::string(R"({"type":"ADDED","object":{"kind":"Pod"}})") + "\n");
    r.tick();
  }
  r.flush();
  EXPECT_EQ(r.openSessions(), 1u);
  EXPECT_TRUE(closed().empty());
  b.tap->end();
  b.tap.reset();
  clock_.advance(29s);
  r.tick();
  EXPECT_EQ(r.openSessions(), 1u);  // idle counts from the watch's end
  clock_.advance(1s);
  r.tick();
  r.flush();
  ASSERT_EQ(closed().size(), 1u);
  auto lines = readLines(closed()[0].jsonl);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(json::parse(lines[0])["latency_us"], 600'000'000);
  EXPECT_EQ(json::parse(lines[0])["watch"], true);
}

TEST_F(RecorderTest, SessionsAreKeyedByAgentAndWorkload) {
  Recorder& r = start();
  exchange(connection("alpha", "pod-1"), "GET", "/api/v1/pods");
  exchange(connection("alpha", "pod-2"), "GET", "/api/v1/pods");
  exchange(connection("beta", "pod-1"), "GET", "/api/v1/pods");
  exchange(connection("alpha", "pod-1", 777), "GET", "/api/v1/pods");  // another kubectl
  EXPECT_EQ(r.openSessions(), 3u);
  r.shutdown();
  auto done = closed();
  ASSERT_EQ(done.size(), 3u);
  std::map<std::string, json> by_workload;
  for (auto& c : done) {
    json m = manifest(c);
    EXPECT_EQ(m["close_reason"], "shutdown");
    by_workload[m["agent"].get<std::string>() + "/" +
                m["identity"]["workload"].get<std::string>()] = m;
  }
  ASSERT_TRUE(by_workload.count("alpha/pod-1"));
  EXPECT_EQ(by_workload["alpha/pod-1"]["request_count"], 2);
  EXPECT_EQ(by_workload["alpha/pod-1"]["processes"].size(), 2u);
  EXPECT_EQ(by_workload["alpha/pod-1"]["identity"]["workload_kind"], "pod");
  expectValid(dir_ / "sessions", dir_ / "audit" / "audit.jsonl");
}

// Requests racing the idle close from several threads: each lands in exactly one session,
// every session's sequence numbers are 1..n without gaps, and nothing is lost.
TEST_F(RecorderTest, RequestsRacingIdleCloseLandInExactlyOneSession) {
  Recorder& r = start();
  auto c = connection("racer");
  constexpr int kThreads = 4, kPerThread = 200;
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      for (int i = 0; i < kPerThread; ++i) {
        auto b = r.begin(c, request("GET", "/api/v1/pods?t=" + std::to_string(t)));
        ASSERT_TRUE(b.tap);
        proxy::ResponseHead rh;
        rh.status = 200;
        b.tap->responseHead(rh);
        b.tap->end();
      }
    });
  }
  go = true;
  for (int i = 0; i < 300; ++i) {
    clock_.advance(31s);  // every step passes the idle timeout
    r.tick();
  }
  for (auto& t : threads) t.join();
  r.shutdown();
  std::uint64_t total = 0;
  std::set<std::string> ids;
  for (auto& cs : closed()) {
    EXPECT_TRUE(ids.insert(cs.session_id).second);
    auto lines = readLines(cs.jsonl);
    std::set<std::uint64_t> seqs;
    for (auto& l : lines) seqs.insert(json::parse(l)["seq"].get<std::uint64_t>());
    EXPECT_EQ(seqs.size(), lines.size());
    if (!seqs.empty()) {
      EXPECT_EQ(*seqs.begin(), 1u);
      EXPECT_EQ(*seqs.rbegin(), lines.size());
    }
    EXPECT_EQ(manifest(cs)["request_count"], lines.size());
    total += lines.size();
  }
  EXPECT_EQ(total, std::uint64_t{kThreads * kPerThread});
  EXPECT_EQ(r.lostRecords(), 0u);
  EXPECT_TRUE(verifyAuditFile(dir_ / "audit" / "audit.jsonl").ok);
  EXPECT_EQ(readLines(dir_ / "audit" / "audit.jsonl").size(), std::size_t{kThreads * kPerThread});
}

TEST_F(RecorderTest, AuditChainLinksEveryRequestIncludingRefused) {
  Recorder& r = start();
  auto c = connection("alpha", "pod-9");
  exchange(c, "GET", "/api/v1/namespaces/default/secrets/db");
  exchange(c, "DELETE", "/api/v1/namespaces/default/pods/web-1");
  r.refused(c, request("GET", "/api/v1/pods"), 403, "credential does not belong to this workload");
  auto b = r.begin(c, request("POST", "/api/v1/namespaces/default/pods/web-2/exec?command=sh"));
  b.tap->requestEnd();
  proxy::ResponseHead rh;
  rh.status = 101;
  b.tap->responseHead(rh);
  b.tap->upgraded();
  b.tap->error("upstream reset");
  r.shutdown();

  auto audit_path = dir_ / "audit" / "audit.jsonl";
  auto result = verifyAuditFile(audit_path);
  ASSERT_TRUE(result.ok) << result.bad_line << ": " << result.problem;
  EXPECT_EQ(result.lines, 4u);
  auto audit = readLines(audit_path);
  json a0 = json::parse(audit[0]);
  EXPECT_EQ(a0["prev_hash"], "genesis");
  EXPECT_EQ(a0["tier"], 3);
  EXPECT_EQ(a0["resource"], "secrets");
  EXPECT_EQ(a0["namespace"], "default");
  EXPECT_EQ(a0["decision"], "allowed");
  json a2 = json::parse(audit[2]);
  EXPECT_EQ(a2["decision"], "denied");
  EXPECT_EQ(a2["status"], 403);
  EXPECT_EQ(a2["session_id"], nullptr);
  json a3 = json::parse(audit[3]);
  EXPECT_EQ(a3["tier"], 4);
  EXPECT_EQ(a3["error"], "upstream reset");

  ASSERT_EQ(closed().size(), 1u);
  auto lines = readLines(closed()[0].jsonl);
  ASSERT_EQ(lines.size(), 3u);
  std::set<std::string> hashes;
  for (auto& l : audit) hashes.insert(json::parse(l)["hash"].get<std::string>());
  for (auto& l : lines) {
    json j = json::parse(l);
    EXPECT_TRUE(hashes.count(j["audit_hash"].get<std::string>())) << l;
  }
  json exec = json::parse(lines[2]);
  EXPECT_TRUE(exec["upgraded"].get<bool>());
  EXPECT_EQ(exec["request_body"], nullptr);
  EXPECT_EQ(exec["error"], "upstream reset");
  expectValid(dir_ / "sessions", audit_path);
}

class AuditTamperTest : public RecorderTest {
 protected:
  fs::path makeChain(int n) {
    start();
    auto c = connection("alpha");
    for (int i = 0; i < n; ++i) exchange(c, "GET", "/api/v1/pods/p" + std::to_string(i));
    recorder_->shutdown();
    return dir_ / "audit" / "audit.jsonl";
  }
  // Runs the real CLI; returns exit code and stdout.
  std::pair<int, std::string> cli(const std::string& args) {
    const char* bin = std::getenv("KSCRIBE_BIN");
    std::string out_file = (dir_ / "cli.out").string();
    std::string cmd = std::string(bin ? bin : KSCRIBE_BUILD_DIR "/kscribe") + " audit verify " +
                      args + " >'" + out_file + "' 2>&1";
    int rc = std::system(cmd.c_str());
    return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, readFile(out_file)};
  }
};

TEST_F(AuditTamperTest, IntactChainVerifies) {
  auto path = makeChain(5);
  auto [rc, out] = cli("'" + path.string() + "'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("chain intact, 5 lines"), std::string::npos) << out;
  auto head = verifyAuditFile(path).head;
  EXPECT_EQ(cli("--head " + head + " '" + path.string() + "'").first, 0);
}

TEST_F(AuditTamperTest, EditedLineFails) {
  auto path = makeChain(5);
  auto lines = readLines(path);
  auto pos = lines[2].find("\"status\":200");
  ASSERT_NE(pos, std::string::npos);
  lines[2].replace(pos, 12, "\"status\":404");
  writeLines(path, lines);
  auto [rc, out] = cli("'" + path.string() + "'");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("line 3: content does not match its hash"), std::string::npos) << out;
}

TEST_F(AuditTamperTest, EditedAndRehashedLineFailsAtTheNext) {
  auto path = makeChain(5);
  auto lines = readLines(path);
  json j = json::parse(lines[1]);
  j["status"] = 500;
  lines[1] = sealAuditLine(j, j["prev_hash"].get<std::string>());
  writeLines(path, lines);
  auto r = verifyAuditFile(path);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bad_line, 3u);
}

TEST_F(AuditTamperTest, DeletedLineFails) {
  auto path = makeChain(5);
  auto lines = readLines(path);
  lines.erase(lines.begin() + 1);
  writeLines(path, lines);
  auto [rc, out] = cli("'" + path.string() + "'");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("line 2: prev_hash does not match line 1"), std::string::npos) << out;
  // Deleting the first line breaks the genesis link.
  lines = readLines(path);
  lines.erase(lines.begin());
  writeLines(path, lines);
  EXPECT_EQ(verifyAuditFile(path).bad_line, 1u);
}

TEST_F(AuditTamperTest, InsertedLineFails) {
  auto path = makeChain(5);
  auto lines = readLines(path);
  lines.insert(lines.begin() + 3, lines[0]);
  writeLines(path, lines);
  auto [rc, out] = cli("'" + path.string() + "'");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("line 4: "), std::string::npos) << out;
}

TEST_F(AuditTamperTest, ReorderedLinesFail) {
  auto path = makeChain(5);
  auto lines = readLines(path);
  std::swap(lines[1], lines[2]);
  writeLines(path, lines);
  auto [rc, out] = cli("'" + path.string() + "'");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("line 2: "), std::string::npos) << out;
}

TEST_F(AuditTamperTest, ReformattedLineFails) {
  auto path = makeChain(3);
  auto lines = readLines(path);
  lines[0] = json::parse(lines[0]).dump(1);  // same content, other whitespace
  lines[0].erase(std::remove(lines[0].begin(), lines[0].end(), '\n'), lines[0].end());
  writeLines(path, lines);
  EXPECT_EQ(verifyAuditFile(path).bad_line, 1u);
}

TEST_F(AuditTamperTest, TruncatedChainFailsAgainstKnownHead) {
  auto path = makeChain(5);
  auto head = verifyAuditFile(path).head;
  auto lines = readLines(path);
  lines.pop_back();
  writeLines(path, lines);
  EXPECT_EQ(cli("'" + path.string() + "'").first, 0);  // undetectable alone
  auto [rc, out] = cli("--head " + head + " '" + path.string() + "'");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("truncated after line 4"), std::string::npos) << out;
}

TEST(AuditChain, CanonicalJsonIsDeterministic) {
  json a = json::parse(R"({"b":1,"a":"caf\u00e9 \ud83d\ude00","c":[1,{"y":null,"x":true}]})");
  std::string text = canonicalJson(a);
  EXPECT_EQ(text, R"({"a":"caf\u00e9 \ud83d\ude00","b":1,"c":[1,{"x":true,"y":null}]})");
  EXPECT_EQ(canonicalJson(json::parse(text)), text);
  json bad;
  bad["p"] = std::string("/api/\xff\xfe");
  std::string t2 = canonicalJson(bad);
  EXPECT_EQ(t2, R"({"p":"/api/\ufffd\ufffd"})");
  EXPECT_EQ(canonicalJson(json::parse(t2)), t2);
  json line = {{"x", 1}};
  std::string sealed = sealAuditLine(line, "genesis");
  std::istringstream in(sealed + "\n");
  EXPECT_TRUE(verifyAuditChain(in).ok);
}

TEST_F(RecorderTest, RecoversSessionsAndAuditChainAfterCrash) {
  auto o = options();
  {
    Recorder& r = start(o);
    auto c = connection("crashy", "pod-7");
    exchange(c, "GET", "/api/v1/pods");
    exchange(c, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web/scale", 200,
             R"({"spec":{"replicas":3}})");
    r.flush();  // synced: this is what survives
    // Snapshot the files now, as a kill -9 would leave them, plus a torn write.
    fs::copy(dir_ / "sessions", dir_ / "crash-sessions", fs::copy_options::recursive);
    fs::create_directories(dir_ / "crash-audit");
    fs::copy(dir_ / "audit" / "audit.jsonl", dir_ / "crash-audit" / "audit.jsonl");
    recorder_.reset();
  }
  fs::path marker;
  for (auto& p : fs::recursive_directory_iterator(dir_ / "crash-sessions")) {
    if (p.path().string().ends_with(".open.json")) marker = p.path();
  }
  ASSERT_FALSE(marker.empty());
  std::string id = marker.filename().string();
  id = id.substr(0, id.size() - std::string(".open.json").size());
  fs::path jsonl = marker.parent_path() / (id + ".jsonl");
  { std::ofstream(jsonl, std::ios::app) << R"({"timestamp":"2026-02-10T14:3)"; }
  { std::ofstream(dir_ / "crash-audit" / "audit.jsonl", std::ios::app) << R"({"agent":"cra)"; }

  closed_.clear();
  o.storage = dir_ / "crash-sessions";
  o.audit_path = dir_ / "crash-audit" / "audit.jsonl";
  Recorder& r2 = start(o);
  auto done = closed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].session_id, id);
  EXPECT_EQ(done[0].close_reason, "recovered after crash");
  json m = manifest(done[0]);
  EXPECT_EQ(m["close_reason"], "recovered after crash");
  EXPECT_EQ(m["request_count"], 2);
  EXPECT_EQ(m["tiers_seen"], json::array({0, 1}));
  EXPECT_GT(m["torn_bytes_cut"].get<int>(), 0);
  std::error_code ec;
  EXPECT_EQ(m["sha256"], durable::sha256File(jsonl, ec));
  EXPECT_FALSE(fs::exists(marker));
  EXPECT_EQ(readLines(jsonl).size(), 2u);

  // The chain continues from the last whole line.
  exchange(connection("crashy", "pod-7"), "GET", "/api/v1/pods");
  r2.shutdown();
  auto result = verifyAuditFile(o.audit_path);
  EXPECT_TRUE(result.ok) << result.bad_line << ": " << result.problem;
  EXPECT_EQ(result.lines, 3u);
  expectValid(o.storage, o.audit_path);
}

TEST_F(RecorderTest, BrokenAuditChainRefusesToStart) {
  auto o = options();
  fs::create_directories(o.audit_path.parent_path());
  writeLines(o.audit_path, {R"({"hash":"00","prev_hash":"genesis"})"});
  Recorder r(o, clock_);
  EXPECT_THROW(r.start(), std::runtime_error);
}

TEST_F(RecorderTest, DiskFailureRejectsUntilRecordingWorksAgain) {
  auto o = options();
  std::atomic<int> fail_errno{0};
  o.fault = [&](std::string_view op, const fs::path&) {
    return (op == "write" || op == "fsync") ? fail_errno.load() : 0;
  };
  Recorder& r = start(o);
  auto c = connection("alpha");
  exchange(c, "GET", "/api/v1/pods");
  r.flush();
  EXPECT_TRUE(r.healthy());
  fail_errno = ENOSPC;
  exchange(c, "GET", "/api/v1/pods");
  r.flush();
  EXPECT_FALSE(r.healthy());
  EXPECT_GE(r.lostRecords(), 1u);
  auto b = r.begin(c, request("GET", "/api/v1/pods"));
  EXPECT_FALSE(b.tap);
  ASSERT_TRUE(b.refusal);
  EXPECT_EQ(b.refusal->status, 503u);
  fail_errno = 0;
  r.flush();  // the sync probes the disk again
  EXPECT_TRUE(r.healthy());
  exchange(c, "GET", "/api/v1/pods");
  r.shutdown();
  auto result = verifyAuditFile(o.audit_path);
  EXPECT_TRUE(result.ok) << result.problem;  // failed appends never break the chain
}

TEST_F(RecorderTest, AdmissionRefusalIsAnsweredAndAuditedThenLifted) {
  // The daemon's spool-full policy: while the admission says no, new exchanges get its Refusal
  // (nothing forwarded, audited as denied, in no session); sessions already open are kept.
  std::atomic<bool> full{false};
  recorder_ = std::make_unique<Recorder>(options(), clock_);
  recorder_->onSessionClosed([this](const PublishedSession& c) {
    std::lock_guard lk(mu_);
    closed_.push_back(c);
  });
  recorder_->setAdmission([&full]() -> std::optional<proxy::Refusal> {
    if (!full) return std::nullopt;
    return proxy::Refusal{503, "ServiceUnavailable", "the spool is full"};
  });
  recorder_->start();
  Recorder& r = *recorder_;
  auto c = connection("alpha");
  exchange(c, "GET", "/api/v1/pods");
  full = true;
  auto b = r.begin(c, request("DELETE", "/api/v1/namespaces/default/pods/web-1"));
  EXPECT_FALSE(b.tap);
  ASSERT_TRUE(b.refusal);
  EXPECT_EQ(b.refusal->status, 503u);
  EXPECT_EQ(b.refusal->reason, "ServiceUnavailable");
  EXPECT_EQ(b.refusal->message, "the spool is full");
  full = false;
  exchange(c, "GET", "/api/v1/namespaces");
  r.shutdown();

  auto audit_path = dir_ / "audit" / "audit.jsonl";
  auto result = verifyAuditFile(audit_path);
  ASSERT_TRUE(result.ok) << result.problem;
  auto audit = readLines(audit_path);
  ASSERT_EQ(audit.size(), 3u);
  json denied = json::parse(audit[1]);
  EXPECT_EQ(denied["decision"], "denied");
  EXPECT_EQ(denied["status"], 503);
  EXPECT_EQ(denied["method"], "DELETE");
  EXPECT_EQ(denied["message"], "the spool is full");
  EXPECT_EQ(denied["session_id"], nullptr);
  ASSERT_EQ(closed().size(), 1u);  // the refusal neither closed nor split the session
  EXPECT_EQ(readLines(closed()[0].jsonl).size(), 2u);
  expectValid(dir_ / "sessions", audit_path);
}

TEST_F(RecorderTest, DiskFailureInForwardModeForwardsAndCounts) {
  auto o = options();
  o.reject_on_failure = false;
  std::atomic<int> fail_errno{EIO};
  o.fault = [&](std::string_view op, const fs::path&) {
    return op == "write" ? fail_errno.load() : 0;
  };
  Recorder& r = start(o);
  auto c = connection("alpha");
  exchange(c, "GET", "/api/v1/pods");
  r.flush();
  EXPECT_FALSE(r.healthy());
  auto b = r.begin(c, request("GET", "/api/v1/pods"));
  EXPECT_TRUE(b.tap);
  EXPECT_FALSE(b.refusal);
  b.tap.reset();  // abandoned: still completes exactly once
  r.flush();
  EXPECT_GE(r.lostRecords(), 2u);
  fail_errno = 0;
}

// Holds the writer inside its first audit append until open(), so the records after it queue
// up; append number fail_at (from 1) fails with EIO. Outlives the recorder's writer thread.
struct AuditAppendGate {
  std::atomic<int> appends{0};
  int fail_at = 0;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();

  durable::FaultHook hook(const fs::path& audit_path) {
    return [this, audit_path, released = released](std::string_view op, const fs::path& path) {
      if (op != "write" || path != audit_path) return 0;
      const int n = ++appends;
      if (n == 1) released.wait();
      return n == fail_at ? EIO : 0;
    };
  }
  // Returns once the writer is inside the first append: nothing is slept on.
  void waitHeld() {
    for (int spins = 0; appends.load() < 1; ++spins) {
      ASSERT_LT(spins, 50'000'000) << "the writer never appended";
      std::this_thread::yield();
    }
  }
  void open() { release.set_value(); }
};

// The writer appends a whole batch of audit lines at once. A failed batch append is cut back
// whole: every record in it is lost and counted, its session lines carry no audit hash, and the
// next batch chains from the last line really on disk.
TEST_F(RecorderTest, FailedBatchedAuditAppendLosesTheBatchAndTheChainContinues) {
  auto o = options();
  o.reject_on_failure = false;  // keep forwarding (and recording) after the failure
  const fs::path audit_path = o.audit_path;
  AuditAppendGate gate;  // the next records queue up as one batch, and that append fails
  gate.fail_at = 2;
  o.fault = gate.hook(audit_path);
  Recorder& r = start(o);
  auto c = connection("alpha");
  exchange(c, "GET", "/api/v1/pods/a");
  gate.waitHeld();
  exchange(c, "GET", "/api/v1/pods/b");
  exchange(c, "GET", "/api/v1/pods/c");
  exchange(c, "GET", "/api/v1/pods/d");
  gate.open();
  r.flush();
  EXPECT_EQ(gate.appends.load(), 2);  // b, c and d went out in one append
  EXPECT_EQ(r.lostRecords(), 3u);
  exchange(c, "GET", "/api/v1/pods/e");
  r.flush();
  const std::string head = r.auditHead();
  r.shutdown();

  auto result = verifyAuditFile(audit_path);
  ASSERT_TRUE(result.ok) << result.bad_line << ": " << result.problem;
  auto audit = readLines(audit_path);
  ASSERT_EQ(audit.size(), 2u);
  json a = json::parse(audit[0]), e = json::parse(audit[1]);
  EXPECT_EQ(a["path"], "/api/v1/pods/a");
  EXPECT_EQ(e["path"], "/api/v1/pods/e");
  EXPECT_EQ(e["prev_hash"], a["hash"]);
  EXPECT_EQ(head, e["hash"]);

  ASSERT_EQ(closed().size(), 1u);
  auto lines = readLines(closed()[0].jsonl);
  ASSERT_EQ(lines.size(), 5u);  // the session file did not fail
  EXPECT_EQ(json::parse(lines[0])["audit_hash"], a["hash"]);
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(json::parse(lines[i])["audit_hash"], nullptr) << i;
  EXPECT_EQ(json::parse(lines[4])["audit_hash"], e["hash"]);
  EXPECT_EQ(manifest(closed()[0])["request_count"], 5);
  expectValid(dir_ / "sessions", audit_path);
}

TEST_F(RecorderTest, QueueOverflowDropsAndCountsWithoutBlocking) {
  auto o = options();
  o.max_queue_bytes = 4096;  // about three records
  o.reject_on_failure = false;
  Recorder& r = start(o);
  auto c = connection("alpha");
  for (int i = 0; i < 200; ++i) exchange(c, "GET", "/api/v1/pods");
  r.flush();
  r.shutdown();
  auto audit = readLines(o.audit_path).size();
  EXPECT_EQ(audit + r.lostRecords(), 200u);
}

TEST_F(RecorderTest, BusyWriterSlowsRequestsDownInsteadOfLosingThem) {
  // on_record_failure: reject. While the writer's queue is over half full, begin() asks the
  // relay to come back later (nothing refused, nothing audited, nothing lost); once it drains,
  // requests are recorded again.
  auto o = options();
  o.max_queue_bytes = 8 * 1024;  // about six records
  const fs::path audit_path = o.audit_path;
  AuditAppendGate gate;
  o.fault = gate.hook(audit_path);
  Recorder& r = start(o);
  auto c = connection("alpha");
  exchange(c, "GET", "/api/v1/pods/first");
  gate.waitHeld();
  const std::uint64_t waits = metrics::get().recorder_waits.value();
  int queued = 0;
  for (; queued < 100; ++queued) {
    auto b = r.begin(c, request("GET", "/api/v1/pods/next"));
    if (b.retry_after.count() > 0) {
      EXPECT_FALSE(b.tap);
      EXPECT_FALSE(b.refusal);
      break;
    }
    ASSERT_TRUE(b.tap);
    b.tap->requestEnd();
    proxy::ResponseHead rh;
    rh.status = 200;
    b.tap->responseHead(rh);
    b.tap->end();
  }
  EXPECT_GE(queued, 2);
  EXPECT_LT(queued, 100) << "the writer's queue never counted as busy";
  EXPECT_EQ(metrics::get().recorder_waits.value(), waits + 1);
  EXPECT_TRUE(r.healthy());
  gate.open();
  r.flush();
  exchange(c, "GET", "/api/v1/pods/after");  // asserts a tap is given again
  r.flush();
  r.shutdown();
  EXPECT_EQ(r.lostRecords(), 0u);
  EXPECT_EQ(readLines(audit_path).size(), static_cast<std::size_t>(queued) + 2);
  auto result = verifyAuditFile(audit_path);
  EXPECT_TRUE(result.ok) << result.problem;
}

}  // namespace
}  // namespace kscribe
