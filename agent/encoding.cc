#include "agent/encoding.h"

#include <openssl/evp.h>

#include <algorithm>

namespace kscribe {

std::string base64(std::string_view data) {
  std::string out;
  out.reserve(4 * ((data.size() + 2) / 3) + 1);
  // EVP_EncodeBlock takes an int length: pieces of a multiple of 3 bytes join without padding.
  constexpr std::size_t kPiece = std::size_t{3} << 28;
  std::size_t at = 0;
  do {
    const std::size_t n = std::min(kPiece, data.size() - at);
    const std::size_t start = out.size();
    out.resize(start + 4 * ((n + 2) / 3) + 1);  // EVP_EncodeBlock writes a NUL after the text
    const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data() + start),
                                        reinterpret_cast<const unsigned char*>(data.data() + at),
                                        static_cast<int>(n));
    out.resize(start + static_cast<std::size_t>(written));
    at += n;
  } while (at < data.size());
  return out;
}

}  // namespace kscribe
