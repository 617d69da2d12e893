#include "agent/units.h"

#include <gtest/gtest.h>

namespace kscribe {
namespace {

using std::chrono::milliseconds;

TEST(Units, ParsesEveryDurationUnit) {
  EXPECT_EQ(parseDuration("500ms"), milliseconds(500));
  EXPECT_EQ(parseDuration("30s"), milliseconds(30'000));
  EXPECT_EQ(parseDuration("5m"), milliseconds(300'000));
  EXPECT_EQ(parseDuration("1h"), milliseconds(3'600'000));
  EXPECT_EQ(parseDuration("1d"), milliseconds(86'400'000));
  EXPECT_EQ(parseDuration("1h30m"), milliseconds(5'400'000));
  EXPECT_EQ(parseDuration("0s"), milliseconds(0));
}

TEST(Units, RefusesMalformedDurations) {
  for (const char* bad :
       {"", "5", "5x", "m", "5 m", "-5s", "5s5", "1.5s", "5M", "s5", "99999999999999999999h"}) {
    EXPECT_FALSE(parseDuration(bad).has_value()) << bad;
  }
}

TEST(Units, ParsesEverySizeUnit) {
  EXPECT_EQ(parseSize("512")->bytes, 512u);
  EXPECT_EQ(parseSize("512B")->bytes, 512u);
  EXPECT_EQ(parseSize("512KB")->bytes, 512'000u);
  EXPECT_EQ(parseSize("1MB")->bytes, 1'000'000u);
  EXPECT_EQ(parseSize("2GB")->bytes, 2'000'000'000u);
  EXPECT_EQ(parseSize("1KiB")->bytes, 1024u);
  EXPECT_EQ(parseSize("1MiB")->bytes, 1024u * 1024u);
  EXPECT_EQ(parseSize("1GiB")->bytes, 1024ull * 1024 * 1024);
  EXPECT_EQ(parseSize("1TiB")->bytes, 1024ull * 1024 * 1024 * 1024);
  EXPECT_EQ(parseSize("1MB")->text, "1MB");
}

TEST(Units, RefusesMalformedSizes) {
  for (const char* bad :
       {"", "MB", "1 MB", "1mb", "1XB", "-1MB", "1.5MB", "99999999999999999999GiB"}) {
    EXPECT_FALSE(parseSize(bad).has_value()) << bad;
  }
}

TEST(Units, FormatsDurationsInTheLargestExactUnit) {
  EXPECT_EQ(formatDuration(milliseconds(300'000)), "5m");
  EXPECT_EQ(formatDuration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(formatDuration(milliseconds(3'600'000)), "1h");
  EXPECT_EQ(formatDuration(milliseconds(0)), "0ms");
  for (const char* text : {"500ms", "30s", "5m", "1h", "90m"}) {
    EXPECT_EQ(parseDuration(formatDuration(*parseDuration(text))), parseDuration(text)) << text;
  }
}

}  // namespace
}  // namespace kscribe
