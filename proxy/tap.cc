#include "proxy/tap.h"

#include <strings.h>

namespace kscribe::proxy {
namespace {
std::string_view find(const Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && ::strncasecmp(k.data(), name.data(), name.size()) == 0) return v;
  }
  return {};
}
}  // namespace

std::string_view RequestHead::header(std::string_view name) const { return find(headers, name); }
std::string_view ResponseHead::header(std::string_view name) const { return find(headers, name); }

}  // namespace kscribe::proxy
