#pragma once
// Standard base64 (RFC 4648, padded), the one encoder kscribe uses: binary bodies in session
// files, kubeconfig *-data fields, Content-MD5.

#include <string>
#include <string_view>

namespace kscribe {

/// Standard base64 with padding of `data` (OpenSSL's EVP_EncodeBlock).
std::string base64(std::string_view data);

}  // namespace kscribe
