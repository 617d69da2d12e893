#pragma once
// A JSON object written straight into a string, for the hot record lines: no document tree, and
// string values escaped in runs rather than byte by byte. Output is what nlohmann::json::dump()
// gives with error_handler_t::replace: invalid UTF-8 becomes U+FFFD, control characters are
// escaped, nothing else is.
#include <cstdint>
#include <string>
#include <string_view>

namespace kscribe {

/// Appends the JSON escape for `c`: a quote, a backslash or a control character.
void appendJsonEscape(std::string& out, unsigned char c);
/// Appends `s` as a JSON string literal (quotes included) to `out`.
void appendJsonQuoted(std::string& out, std::string_view s);
/// Like appendJsonQuoted, but ASCII only: what dump() gives with ensure_ascii (DEL and every
/// non-ASCII code point \u-escaped, surrogate pairs above U+FFFF, invalid UTF-8 as \ufffd).
void appendJsonQuotedAscii(std::string& out, std::string_view s);

/// Tests only, single-threaded: turns the SIMD step of the escaping off (or back on where the
/// CPU has it) to check the portable one; returns the previous setting.
bool setJsonSimd(bool enabled);

/// Keys are written as they are: they are the code's own literals and need no escaping.
class JsonObjectWriter {
 public:
  explicit JsonObjectWriter(std::string& out) : out_(out) { out_.push_back('{'); }
  JsonObjectWriter& str(std::string_view key, std::string_view value);
  /// A string, or null when empty.
  JsonObjectWriter& strOrNull(std::string_view key, std::string_view value);
  JsonObjectWriter& num(std::string_view key, std::int64_t value);
  JsonObjectWriter& unum(std::string_view key, std::uint64_t value);
  JsonObjectWriter& boolean(std::string_view key, bool value);
  JsonObjectWriter& null(std::string_view key);
  /// A value already in JSON form (a nested object dumped elsewhere).
  JsonObjectWriter& raw(std::string_view key, std::string_view json);
  void close() { out_.push_back('}'); }

 private:
  void key(std::string_view k);
  template <class Int>
  JsonObjectWriter& number(std::string_view k, Int value);
  std::string& out_;
  bool first_ = true;
};

}  // namespace kscribe
