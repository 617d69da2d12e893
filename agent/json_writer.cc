#include "agent/json_writer.h"

#include <array>
#include <charconv>
#include <utility>

namespace kscribe {
namespace {

// 0: copy as is; 1: needs an escape; 2: the lead byte of a multi-byte UTF-8 sequence (or an
// invalid byte) that must be checked.
constexpr std::array<std::uint8_t, 256> kClass = [] {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = 1;
  t['"'] = 1;
  t['\\'] = 1;
  for (int c = 0x80; c < 0x100; ++c) t[c] = 2;
  return t;
}();

// The UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF):
// returns its length and whether it is valid; when it is not, the length is its maximal valid
// prefix (at least 1), which becomes one U+FFFD, as Unicode recommends and nlohmann does.
std::pair<std::size_t, bool> utf8Sequence(const unsigned char* p, const unsigned char* end) {
  const unsigned char c = p[0];
  std::size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;  // no overlongs
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;  // no overlongs
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {1, false};
  }
  for (std::size_t i = 1; i <= need; ++i) {
    const bool ok = p + i < end && (i == 1 ? (p[i] >= lo && p[i] <= hi) : (p[i] & 0xC0) == 0x80);
    if (!ok) return {i, false};
  }
  return {need + 1, true};
}

}  // namespace

void appendJsonEscape(std::string& out, unsigned char c) {
  switch (c) {
    case '"':
      out.append("\\\"");
      break;
    case '\\':
      out.append("\\\\");
      break;
    case '\n':
      out.append("\\n");
      break;
    case '\r':
      out.append("\\r");
      break;
    case '\t':
      out.append("\\t");
      break;
    case '\b':
      out.append("\\b");
      break;
    case '\f':
      out.append("\\f");
      break;
    default: {
      static constexpr char kHex[] = "0123456789abcdef";
      const char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
      out.append(esc, sizeof esc);
    }
  }
}

void appendJsonQuoted(std::string& out, std::string_view s) {
  out.push_back('"');
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const auto* run = p;
    while (p < end && kClass[*p] == 0) ++p;
    out.append(reinterpret_cast<const char*>(run), static_cast<std::size_t>(p - run));
    if (p == end) break;
    if (kClass[*p] == 2) {
      const auto [n, valid] = utf8Sequence(p, end);
      if (valid) {
        out.append(reinterpret_cast<const char*>(p), n);
      } else {
        out.append("\xEF\xBF\xBD");  // U+FFFD REPLACEMENT CHARACTER
      }
      p += n;
      continue;
    }
    appendJsonEscape(out, *p++);
  }
  out.push_back('"');
}

void JsonObjectWriter::key(std::string_view k) {
  if (!first_) out_.push_back(',');
  first_ = false;
  appendJsonQuoted(out_, k);
  out_.push_back(':');
}

JsonObjectWriter& JsonObjectWriter::str(std::string_view k, std::string_view value) {
  key(k);
  appendJsonQuoted(out_, value);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::strOrNull(std::string_view k, std::string_view value) {
  return value.empty() ? null(k) : str(k, value);
}

template <class Int>
JsonObjectWriter& JsonObjectWriter::number(std::string_view k, Int value) {
  key(k);
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  out_.append(buf, r.ptr);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::num(std::string_view k, std::int64_t value) {
  return number(k, value);
}

JsonObjectWriter& JsonObjectWriter::unum(std::string_view k, std::uint64_t value) {
  return number(k, value);
}

JsonObjectWriter& JsonObjectWriter::boolean(std::string_view k, bool value) {
  key(k);
  out_.append(value ? "true" : "false");
  return *this;
}

JsonObjectWriter& JsonObjectWriter::null(std::string_view k) {
  key(k);
  out_.append("null");
  return *this;
}

JsonObjectWriter& JsonObjectWriter::raw(std::string_view k, std::string_view json) {
  key(k);
  out_.append(json);
  return *this;
}

}  // namespace kscribe
