#include "agent/json_writer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>

namespace kscribe {
namespace {

std::string nlohmannQuoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string writerQuoted(const std::string& s) {
  std::string out;
  appendJsonQuoted(out, s);
  return out;
}

TEST(JsonWriterTest, StringsMatchNlohmannIncludingInvalidUtf8) {
  const std::vector<std::string> cases = {
      "",
      "plain ascii",
      R"({"kind":"Secret","data":{"k":"ZmFrZQ=="}})",
      "quote \" backslash \\ slash / tab \t nl \n cr \r bs \b ff \f",
      std::string("nul \0 and \x01\x1f\x7f", 12),
      "utf8: \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
      "lone continuation \x80 here",
      "truncated \xe2\x82",
      "overlong \xc0\xaf and \xe0\x80\xaf",
      "surrogate \xed\xa0\x80",
      "too big \xf4\x90\x80\x80 and \xf5\x80\x80\x80",
      "\xff\xfe",
  };
  for (const auto& c : cases) EXPECT_EQ(writerQuoted(c), nlohmannQuoted(c)) << c;
}

TEST(JsonWriterTest, RandomBytesMatchNlohmann) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string s(rng() % 40, '\0');
    for (auto& ch : s) ch = static_cast<char>(rng() % 256);
    ASSERT_EQ(writerQuoted(s), nlohmannQuoted(s)) << i;
  }
}

TEST(JsonWriterTest, ObjectParsesBackWithEveryKind) {
  std::string out;
  JsonObjectWriter w(out);
  w.str("s", "a\"b").strOrNull("empty", "").strOrNull("full", "x").num("neg", -5);
  w.unum("big", 18446744073709551615ull).boolean("t", true).boolean("f", false).null("n");
  w.raw("obj", R"({"k":[1,2]})");
  w.close();
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["s"], "a\"b");
  EXPECT_TRUE(j["empty"].is_null());
  EXPECT_EQ(j["full"], "x");
  EXPECT_EQ(j["neg"], -5);
  EXPECT_EQ(j["big"].get<std::uint64_t>(), 18446744073709551615ull);
  EXPECT_EQ(j["t"], true);
  EXPECT_EQ(j["f"], false);
  EXPECT_TRUE(j["n"].is_null());
  EXPECT_EQ(j["obj"]["k"][1], 2);
  EXPECT_EQ(out.find(' '), std::string::npos);
}

}  // namespace
}  // namespace kscribe
