#include "agent/units.h"

#include <array>
#include <charconv>
#include <limits>
#include <utility>

namespace kscribe {
namespace {

constexpr std::uint64_t kMaxMillis = std::numeric_limits<std::int64_t>::max() / 1000;

// Reads leading decimal digits; returns the value and advances `s`.
std::optional<std::uint64_t> takeNumber(std::string_view& s) {
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr == s.data()) return std::nullopt;
  s.remove_prefix(static_cast<std::size_t>(ptr - s.data()));
  return v;
}

}  // namespace

std::optional<Duration> parseDuration(std::string_view text) {
  static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 5> kUnits{
      {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}}};
  if (text.empty()) return std::nullopt;
  std::uint64_t total = 0;
  std::string_view s = text;
  while (!s.empty()) {
    auto n = takeNumber(s);
    if (!n) return std::nullopt;
    std::size_t len = 0;
    while (len < s.size() && s[len] >= 'a' && s[len] <= 'z') ++len;
    std::string_view unit = s.substr(0, len);
    s.remove_prefix(len);
    std::uint64_t scale = 0;
    for (const auto& [name, ms] : kUnits) {
      if (name == unit) scale = ms;
    }
    if (scale == 0) return std::nullopt;  // a bare number is ambiguous: require a unit
    if (*n > kMaxMillis / scale) return std::nullopt;
    total += *n * scale;
    if (total > kMaxMillis) return std::nullopt;
  }
  return Duration(static_cast<Duration::rep>(total));
}

std::optional<Size> parseSize(std::string_view text) {
  static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 9> kUnits{
      {{"", 1},
       {"B", 1},
       {"KB", 1000},
       {"MB", 1000 * 1000},
       {"GB", 1000 * 1000 * 1000},
       {"KiB", 1024},
       {"MiB", 1024 * 1024},
       {"GiB", 1024 * 1024 * 1024},
       {"TiB", 1024ULL * 1024 * 1024 * 1024}}};
  std::string_view s = text;
  auto n = takeNumber(s);
  if (!n) return std::nullopt;
  for (const auto& [name, scale] : kUnits) {
    if (name == s) {
      if (*n > std::numeric_limits<std::uint64_t>::max() / scale) return std::nullopt;
      return Size{*n * scale, std::string(text)};
    }
  }
  return std::nullopt;
}

std::string formatDuration(Duration d) {
  static constexpr std::array<std::pair<std::string_view, std::int64_t>, 4> kUnits{
      {{"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1000}}};
  const auto ms = d.count();
  for (const auto& [name, scale] : kUnits) {
    if (ms != 0 && ms % scale == 0) return std::to_string(ms / scale) + std::string(name);
  }
  return std::to_string(ms) + "ms";
}

}  // namespace kscribe
