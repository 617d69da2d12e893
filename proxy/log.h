#pragma once
// Minimal leveled logging to stderr, one line per event, safe from any thread.
// Never pass credentials or body bytes to it.

#include <string_view>

namespace kscribe::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void setLevel(Level level);
/// Parses "debug", "info", "warn", "error"; anything else leaves kInfo.
Level parseLevel(std::string_view name);
bool enabled(Level level);
void write(Level level, std::string_view message);

inline void debug(std::string_view m) {
  if (enabled(Level::kDebug)) write(Level::kDebug, m);
}
inline void info(std::string_view m) { write(Level::kInfo, m); }
inline void warn(std::string_view m) { write(Level::kWarn, m); }
inline void error(std::string_view m) { write(Level::kError, m); }

}  // namespace kscribe::log
