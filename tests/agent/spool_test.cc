#include "agent/spool.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "agent/config.h"
#include "agent/s3_client.h"
#include "agent/shipper.h"

namespace kscribe {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("spool_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "sessions");
  }
  void TearDown() override { fs::remove_all(dir_); }

  ClosedSession write(const std::string& id, std::size_t size) {
    fs::path data = dir_ / "sessions" / (id + ".jsonl");
    fs::path manifest = dir_ / "sessions" / (id + ".manifest.json");
    std::ofstream(data) << std::string(size, 'x');
    std::ofstream(manifest) << "{}";
    return ClosedSession{id, "bot", std::chrono::sys_days{std::chrono::year{2026} / 2 / 10} + 14h,
                         data, manifest};
  }

  KeyLayout layout_{"kscribe", "prod", "node-1"};
  fs::path dir_;
};

TEST_F(SpoolTest, DeterministicKeys) {
  auto started = std::chrono::sys_days{std::chrono::year{2026} / 2 / 10} + 23h + 59min;
  EXPECT_EQ(layout_.key("bot", started, "s1.jsonl"), "kscribe/prod/node-1/bot/2026-02-10/s1.jsonl");
  EXPECT_EQ(layout_.auditHeadKey(), "kscribe/prod/node-1/audit/head.json");
  EXPECT_EQ((KeyLayout{"", "c", "n"}).key("a", started, "f"), "c/n/a/2026-02-10/f");
}

TEST_F(SpoolTest, AddPersistsAndResumesAfterRestart) {
  {
    Spool spool(dir_ / "spool", 1 << 20, "reject", layout_);
    std::string err;
    ASSERT_TRUE(spool.add(write("s1", 100), &err)) << err;
    ASSERT_TRUE(spool.add(write("s2", 100), &err)) << err;
    auto p = spool.pending();
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[0].session_id, "s1");
    ASSERT_EQ(p[0].files.size(), 2u);
    EXPECT_EQ(p[0].files[0].key, "kscribe/prod/node-1/bot/2026-02-10/s1.jsonl");
    EXPECT_EQ(p[0].files[1].key, "kscribe/prod/node-1/bot/2026-02-10/s1.manifest.json");
    spool.markUploaded(p[0], p[0].files[0].name);
  }
  // The sessions directory keeps its files: the spool holds links, not the originals.
  EXPECT_TRUE(fs::exists(dir_ / "sessions" / "s1.jsonl"));
  Spool again(dir_ / "spool", 1 << 20, "reject", layout_);
  auto p = again.pending();
  ASSERT_EQ(p.size(), 2u);
  EXPECT_TRUE(p[0].files[0].uploaded);
  EXPECT_FALSE(p[0].files[1].uploaded);
  EXPECT_GT(again.bytes(), 200u);
  again.remove(p[0]);
  EXPECT_EQ(again.pending().size(), 1u);
  // New entries keep sorting after the resumed ones.
  std::string err;
  ASSERT_TRUE(again.add(write("s0", 10), &err));
  EXPECT_EQ(again.pending().back().session_id, "s0");
}

TEST_F(SpoolTest, RejectPolicyStopsAcceptingButKeepsEverything) {
  Spool spool(dir_ / "spool", 1000, "reject", layout_);
  std::string err;
  ASSERT_TRUE(spool.add(write("a", 600), &err));
  EXPECT_TRUE(spool.accepting());
  ASSERT_TRUE(spool.add(write("b", 600), &err));
  EXPECT_FALSE(spool.accepting());
  EXPECT_EQ(spool.pending().size(), 2u);
  EXPECT_EQ(spool.dropped(), 0u);
  for (const auto& e : spool.pending()) spool.remove(e);
  EXPECT_TRUE(spool.accepting());
}

TEST_F(SpoolTest, BytesCountWhatIsOnDiskSoDrainingReachesZero) {
  Spool spool(dir_ / "spool", 1 << 20, "reject", layout_);
  std::string err;
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(spool.add(write(id, 500), &err)) << err;
  // What add() counted is what a restart scans and what remove() subtracts (entry.json too).
  Spool rescanned(dir_ / "spool", 1 << 20, "reject", layout_);
  EXPECT_EQ(spool.bytes(), rescanned.bytes());
  std::uint64_t sum = 0;
  for (const auto& e : spool.pending()) sum += e.bytes;
  EXPECT_EQ(spool.bytes(), sum);
  auto p = spool.pending();
  spool.remove(p[0]);
  EXPECT_EQ(spool.bytes(), p[1].bytes + p[2].bytes);
}

TEST_F(SpoolTest, RejectBoundReopensWhenUploadsDrain) {
  // The daemon asks accepting() for every request: it flips at the bound both ways.
  Spool spool(dir_ / "spool", 2000, "reject", layout_);
  std::string err;
  ASSERT_TRUE(spool.add(write("a", 900), &err));
  EXPECT_TRUE(spool.accepting());
  ASSERT_TRUE(spool.add(write("b", 900), &err));
  EXPECT_FALSE(spool.accepting());
  // A restart with the spool still full keeps refusing.
  EXPECT_FALSE(Spool(dir_ / "spool", 2000, "reject", layout_).accepting());
  spool.remove(spool.pending()[0]);
  EXPECT_TRUE(spool.accepting());
}

// Runs the schema validator (python3-jsonschema) over a spool; returns its exit status.
int validateSpool(const fs::path& spool) {
  const char* py = std::getenv("KSCRIBE_PYTHON");
  std::string cmd = std::string(py ? py : "/usr/bin/python3") + " " + KSCRIBE_SOURCE_DIR +
                    "/tests/integration/kscribe_schemas.py --spool '" + spool.string() +
                    "' >/dev/null 2>&1";
  return std::system(cmd.c_str());
}

TEST_F(SpoolTest, EntriesValidateAgainstSchema) {
  Spool spool(dir_ / "spool", 1 << 20, "reject", layout_);
  std::string err;
  ASSERT_TRUE(spool.add(write("s-1", 100), &err)) << err;
  ClosedSession no_manifest = write("s-2", 100);
  no_manifest.manifest_file.clear();
  ASSERT_TRUE(spool.add(no_manifest, &err)) << err;
  spool.markUploaded(spool.pending()[0], "s-1.jsonl");
  ASSERT_EQ(spool.pending().size(), 2u);
  EXPECT_EQ(validateSpool(dir_ / "spool"), 0);
  // The validator can fail: an entry naming another session's file does not validate.
  const fs::path entry = spool.pending()[1].dir / "entry.json";
  std::ifstream in(entry);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  text.replace(text.find("\"name\":\"s-2.jsonl\""), 19, "\"name\":\"s-9.jsonl\"");
  std::ofstream(entry, std::ios::trunc) << text;
  EXPECT_NE(validateSpool(dir_ / "spool"), 0);
}

TEST_F(SpoolTest, DropOldestPolicyMakesRoomAndCounts) {
  Spool spool(dir_ / "spool", 1500, "drop_oldest", layout_);
  std::string err;
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(spool.add(write(id, 600), &err));
  auto p = spool.pending();
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].session_id, "b");
  EXPECT_EQ(spool.dropped(), 1u);
  EXPECT_TRUE(spool.accepting());
  Spool again(dir_ / "spool", 1500, "drop_oldest", layout_);
  EXPECT_EQ(again.dropped(), 1u);
}

TEST_F(SpoolTest, RefusesUnsafeNamesAndMissingFiles) {
  Spool spool(dir_ / "spool", 1 << 20, "reject", layout_);
  std::string err;
  ClosedSession s = write("ok", 10);
  s.session_id = "../escape";
  EXPECT_FALSE(spool.add(s, &err));
  EXPECT_NE(err.find("file-safe"), std::string::npos);
  s = write("ok", 10);
  s.data_file = dir_ / "missing.jsonl";
  EXPECT_FALSE(spool.add(s, &err));
  EXPECT_TRUE(spool.pending().empty());
}

TEST(AuditHead, LastLineHash) {
  fs::path f = fs::temp_directory_path() / ("audit_head_" + std::to_string(::getpid()));
  EXPECT_EQ(auditChainHead(f), "");
  std::ofstream(f) << "{\"hash\":\"aa\",\"prev_hash\":\"genesis\"}\n{\"hash\":\"bb\"}\n";
  std::uint64_t size = 0;
  EXPECT_EQ(auditChainHead(f, &size), "bb");
  EXPECT_GT(size, 0u);
  fs::remove(f);
}

TEST(S3Backoff, ExponentialWithFullJitterAndCap) {
  EXPECT_EQ(backoffDelay(1, 200ms, 20s, 1.0), 200ms);
  EXPECT_EQ(backoffDelay(3, 200ms, 20s, 1.0), 800ms);
  EXPECT_EQ(backoffDelay(3, 200ms, 20s, 0.5), 400ms);
  EXPECT_EQ(backoffDelay(30, 200ms, 20s, 1.0), 20s);
  EXPECT_EQ(backoffDelay(5, 200ms, 20s, 0.0), 0ms);
}

TEST(S3Credentials, EnvironmentThenSharedFile) {
  fs::path f = fs::temp_directory_path() / ("aws_creds_" + std::to_string(::getpid()));
  std::ofstream(f) << "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = "
                      "fake-secret\n\n[profile other]\naws_access_key_id=AKIDOTHER\n"
                      "aws_secret_access_key=fake2\naws_session_token = tok\n";
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::unsetenv("AWS_SESSION_TOKEN");
  ::unsetenv("AWS_PROFILE");
  ShippingConfig s;
  s.credentials_file = f;
  auto c = loadCredentials(s);
  EXPECT_EQ(c.access_key_id, "AKIDFILE");
  EXPECT_EQ(c.secret_access_key, "fake-secret");
  s.profile = "other";
  c = loadCredentials(s);
  EXPECT_EQ(c.access_key_id, "AKIDOTHER");
  EXPECT_EQ(c.session_token, "tok");
  s.profile = "absent";
  try {
    loadCredentials(s);
    ADD_FAILURE() << "no error for a missing profile";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "shipping.profile");
    EXPECT_EQ(std::string(e.what()).find("fake"), std::string::npos);
  }
  ::setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "fake-env", 1);
  c = loadCredentials(s);
  EXPECT_EQ(c.access_key_id, "AKIDENV");
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  s.credentials_file = f.string() + ".missing";
  EXPECT_THROW(loadCredentials(s), ConfigError);
  fs::remove(f);
}

}  // namespace
}  // namespace kscribe
