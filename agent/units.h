#pragma once
// Durations ("500ms", "30s", "5m", "1h", "1h30m") and sizes ("512KB", "1MB", "1GiB") as written in
// the config. Sizes keep the text they were written as: the truncation marker repeats it.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kscribe {

using Duration = std::chrono::milliseconds;

/// A byte count plus the text it was configured as ("1MB"); KB/MB/GB are powers of 1000,
/// KiB/MiB/GiB powers of 1024, a bare number or "B" is bytes.
struct Size {
  std::uint64_t bytes = 0;
  std::string text;
  friend bool operator==(const Size&, const Size&) = default;
};

/// Parses "500ms", "30s", "5m", "1h", "2h45m", "1d"; std::nullopt if malformed or out of range.
std::optional<Duration> parseDuration(std::string_view text);
/// Parses "512", "512B", "512KB", "1MB", "1GiB"; std::nullopt if malformed or out of range.
std::optional<Size> parseSize(std::string_view text);

/// Canonical text for a duration: the largest exact unit ("5m", "1500ms").
std::string formatDuration(Duration d);

}  // namespace kscribe
