#pragma once
// Helpers for the redaction tests: run a body through BodyCapture in any chunking, and check
// that planted secret values appear in no form in what would be stored.

#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "agent/body_capture.h"
#include "agent/encoding.h"

namespace kscribe::testing {

inline std::string readFixture(const std::string& name) {
  std::ifstream in(std::string(KSCRIBE_SOURCE_DIR) + "/tests/fixtures/k8s/" + name,
                   std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_FALSE(ss.str().empty()) << name;
  return ss.str();
}

/// The forms a planted secret could leak in: plain, JSON-escaped (it has no special characters,
/// so that is plain too), base64 and base64-of-base64 at every alignment inside a larger blob.
inline std::vector<std::string> leakForms(const std::string& secret) {
  std::vector<std::string> forms{secret};
  for (const std::string& s : {secret, base64(secret)}) {
    for (int shift = 0; shift < 3; ++shift) {
      const std::string enc = base64(std::string(static_cast<std::size_t>(shift), 'x') + s);
      // Drop the characters that mix in neighbouring bytes.
      if (enc.size() > 12) forms.push_back(enc.substr(4, enc.size() - 8));
    }
  }
  return forms;
}

inline void expectNoLeak(const BodyCapture::Result& r, const std::vector<std::string>& secrets) {
  for (const std::string& secret : secrets) {
    for (const std::string& form : leakForms(secret)) {
      if (r.body) {
        EXPECT_EQ(r.body->find(form), std::string::npos) << form << " in " << *r.body;
      }
      EXPECT_EQ(r.omitted_reason.find(form), std::string::npos) << form;
    }
  }
}

/// Feeds `body` in the given chunk sizes (cycled); an empty list feeds it whole.
inline BodyCapture::Result capture(std::string_view body, const BodyOptions& options,
                                   const std::vector<std::size_t>& chunks = {}) {
  BodyCapture c(options);
  std::size_t pos = 0, k = 0;
  while (pos < body.size()) {
    std::size_t n = chunks.empty() ? body.size() : chunks[k++ % chunks.size()];
    n = std::min(std::max<std::size_t>(n, 1), body.size() - pos);
    c.feed(std::span<const char>(body.data() + pos, n));
    pos += n;
  }
  return c.finish();
}

inline std::string gzip(std::string_view in) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

}  // namespace kscribe::testing
