#include "agent/encoding.h"

#include <gtest/gtest.h>

#include <string>

namespace kscribe {
namespace {

TEST(Base64, Rfc4648Vectors) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64("foob"), "Zm9vYg==");
  EXPECT_EQ(base64("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
}

TEST(Base64, BinaryBytesAndNoLineBreaks) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  const std::string out = base64(all + all);
  EXPECT_EQ(out.size(), 4 * ((512 + 2) / 3));
  EXPECT_EQ(out.find('\n'), std::string::npos);
  EXPECT_EQ(out.substr(0, 8), "AAECAwQF");
  EXPECT_EQ(out.substr(out.size() - 4), "/v8=");  // 512 = 3 * 170 + 2: 0xFE 0xFF
}

}  // namespace
}  // namespace kscribe
