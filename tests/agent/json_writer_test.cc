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

std::string nlohmannAscii(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

std::string writerAscii(const std::string& s) {
  std::string out;
  appendJsonQuotedAscii(out, s);
  return out;
}

// Long strings of mostly plain text with every kind of awkward byte sprinkled in at random
// places: exercises the word-at-a-time scan's edges and the output buffer's regrowth.
std::string sprinkled(std::mt19937& rng, std::size_t size) {
  static const std::vector<std::string> odd = {"\"",
                                               "\\",
                                               "\n",
                                               "\x01",
                                               "\x7f",
                                               "\xc3\xa9",
                                               "\xe2\x82\xac",
                                               "\xf0\x9f\x98\x80",
                                               "\xe2\x82",
                                               "\x80",
                                               "\xff",
                                               "\xed\xa0\x80",
                                               "\xf4\x90\x80\x80"};
  std::string s;
  const unsigned density = 1 + rng() % 64;  // 1: nearly all awkward
  while (s.size() < size) {
    if (rng() % density == 0) {
      s += odd[rng() % odd.size()];
    } else {
      s += static_cast<char>(0x20 + rng() % 0x5f);
    }
  }
  return s;
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

TEST(JsonWriterTest, AsciiMatchesNlohmannEnsureAscii) {
  const std::vector<std::string> cases = {"",
                                          "plain",
                                          "del \x7f",
                                          "e\xc3\xa9",
                                          "\xe2\x82\xac",
                                          "\xef\xbf\xbf",
                                          "\xf0\x9f\x98\x80",
                                          "\xf4\x8f\xbf\xbf",
                                          "\xe2\x82",
                                          "\xff\xfe",
                                          std::string("\0\x1f", 2)};
  for (const auto& c : cases) EXPECT_EQ(writerAscii(c), nlohmannAscii(c)) << c;
  std::mt19937 rng(9);
  for (int i = 0; i < 2000; ++i) {
    std::string s(rng() % 40, '\0');
    for (auto& ch : s) ch = static_cast<char>(rng() % 256);
    ASSERT_EQ(writerAscii(s), nlohmannAscii(s)) << i;
  }
}

TEST(JsonWriterTest, LongStringsMatchNlohmannInBothModes) {
  std::mt19937 rng(3);
  for (int i = 0; i < 600; ++i) {
    const std::string s = sprinkled(rng, rng() % 6000);
    ASSERT_EQ(writerQuoted(s), nlohmannQuoted(s)) << i;
    ASSERT_EQ(writerAscii(s), nlohmannAscii(s)) << i;
    // Appending after existing text keeps it.
    std::string out = "x";
    appendJsonQuoted(out, s);
    ASSERT_EQ(out, "x" + nlohmannQuoted(s)) << i;
  }
}

TEST(JsonWriterTest, PortableEscapingMatchesToo) {
  const bool simd = setJsonSimd(false);
  std::mt19937 rng(4);
  for (int i = 0; i < 300; ++i) {
    const std::string s = sprinkled(rng, rng() % 3000);
    EXPECT_EQ(writerQuoted(s), nlohmannQuoted(s)) << i;
    EXPECT_EQ(writerAscii(s), nlohmannAscii(s)) << i;
  }
  setJsonSimd(simd);
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
