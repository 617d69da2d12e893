#include "agent/json_writer.h"

#include <array>
#include <bit>
#include <charconv>
#include <cstring>
#include <utility>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kscribe {
namespace {

// 0: copy as is; 1: needs an escape; 2: the lead byte of a multi-byte UTF-8 sequence (or an
// invalid byte) that must be checked. DEL (0x7f) is escaped only in ASCII mode.
constexpr std::array<std::uint8_t, 256> kClass = [] {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = 1;
  t['"'] = 1;
  t['\\'] = 1;
  for (int c = 0x80; c < 0x100; ++c) t[c] = 2;
  return t;
}();

constexpr char kHex[] = "0123456789abcdef";

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

// Writes the escape of an ASCII byte that needs one; at most 6 bytes.
char* writeEscape(char* w, unsigned char c) {
  char e = 0;
  switch (c) {
    case '"':
      e = '"';
      break;
    case '\\':
      e = '\\';
      break;
    case '\n':
      e = 'n';
      break;
    case '\r':
      e = 'r';
      break;
    case '\t':
      e = 't';
      break;
    case '\b':
      e = 'b';
      break;
    case '\f':
      e = 'f';
      break;
    default:
      break;
  }
  *w++ = '\\';
  if (e) {
    *w++ = e;
    return w;
  }
  *w++ = 'u';
  *w++ = '0';
  *w++ = '0';
  *w++ = kHex[c >> 4];
  *w++ = kHex[c & 15];
  return w;
}

char* writeU16(char* w, std::uint32_t u) {
  *w++ = '\\';
  *w++ = 'u';
  *w++ = kHex[(u >> 12) & 15];
  *w++ = kHex[(u >> 8) & 15];
  *w++ = kHex[(u >> 4) & 15];
  *w++ = kHex[u & 15];
  return w;
}

constexpr std::uint64_t kOnes = 0x0101010101010101ull;
constexpr std::uint64_t kHigh = 0x8080808080808080ull;

// A mask whose lowest set bit marks the first byte of `x` that needs more than a backslash in
// front (a control character, a non-ASCII byte, and DEL in ASCII mode). Borrows only run upwards
// from a flagged byte, so the lowest flag is exact (bytes above it may be false).
template <bool kAscii>
std::uint64_t hardBytes(std::uint64_t x) {
  std::uint64_t m = ((x - kOnes * 0x20) & ~x & kHigh) | (x & kHigh);
  if constexpr (kAscii) {
    const std::uint64_t del = x ^ (kOnes * 0x7f);
    m |= (del - kOnes) & ~del & kHigh;
  }
  return m;
}

// The high bit of every byte of `x` that is a quote or a backslash; exact for every byte (no
// carry crosses a byte), so it can drive the byte-by-byte step below.
std::uint64_t quoteBytes(std::uint64_t x) {
  const auto zero = [](std::uint64_t v) { return ~(((v & ~kHigh) + ~kHigh) | v) & kHigh; };
  return zero(x ^ (kOnes * '"')) | zero(x ^ (kOnes * '\\'));
}

// Copies n bytes, a backslash before each one `quotes` flags: without branches, since quotes are
// frequent and irregular in a JSON body (a branch per quote is mostly mispredicted).
char* copyQuoting(char* w, const unsigned char* p, std::size_t n, std::uint64_t quotes) {
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned e = static_cast<unsigned>(quotes >> (8 * i + 7)) & 1u;
    const char c = static_cast<char>(p[i]);
    w[0] = e ? '\\' : c;
    w[1] = c;
    w += 1 + e;
  }
  return w;
}

#if defined(__x86_64__)
// 16 bytes at a time with SSSE3: compares find the quotes and the bytes that need more, and for
// each 8-byte half one byte shuffle puts the backslashes in (a table of the 256 quote patterns).
struct QuoteShuffles {
  alignas(16) std::uint8_t idx[256][16];
};
constexpr QuoteShuffles kQuoteShuffles = [] {
  QuoteShuffles t{};
  for (unsigned m = 0; m < 256; ++m) {
    unsigned out = 0;
    for (unsigned i = 0; i < 8; ++i) {
      if (m & (1u << i)) t.idx[m][out++] = 8;  // lane 8 holds the backslash
      t.idx[m][out++] = static_cast<std::uint8_t>(i);
    }
    while (out < 16) t.idx[m][out++] = 0x80;  // zero
  }
  return t;
}();

// Writes the first k (<= 8) bytes of `half` with a backslash before each quote `m8` flags;
// stores 16 bytes whatever k.
__attribute__((target("ssse3,popcnt"))) inline char* shuffleHalf(char* w, __m128i half, unsigned m8,
                                                                 unsigned k) {
  half = _mm_insert_epi16(half, '\\', 4);  // lane 8
  const __m128i idx = _mm_load_si128(reinterpret_cast<const __m128i*>(kQuoteShuffles.idx[m8]));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(w), _mm_shuffle_epi8(half, idx));
  return w + k + static_cast<unsigned>(__builtin_popcount(m8 & ((1u << k) - 1)));
}

// Copies and escapes quotes until a byte that needs more than a backslash, the last 15 bytes
// or the end of the room (33 bytes a block); leaves p and w there.
template <bool kAscii>
__attribute__((target("ssse3,popcnt"))) void quoteRunSsse3(const unsigned char*& p_io,
                                                           const unsigned char* end, char*& w_io,
                                                           const char* limit) {
  const unsigned char* p = p_io;
  char* w = w_io;
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i space = _mm_set1_epi8(0x20);
  const __m128i del = _mm_set1_epi8(0x7f);
  while (end - p >= 16 && limit - w >= 33) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const auto q = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash))));
    // Signed: below 0x20 are the control characters and every byte from 0x80 up.
    auto hard = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmplt_epi8(v, space)));
    if constexpr (kAscii) hard |= static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, del)));
    if ((q | hard) == 0) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(w), v);
      p += 16;
      w += 16;
      continue;
    }
    const unsigned n = hard ? static_cast<unsigned>(std::countr_zero(hard)) : 16;
    w = shuffleHalf(w, v, q & 0xff, n < 8 ? n : 8);
    if (n > 8) w = shuffleHalf(w, _mm_srli_si128(v, 8), (q >> 8) & 0xff, n - 8);
    p += n;
    if (hard) break;
  }
  p_io = p;
  w_io = w;
}

bool ssse3Usable() { return __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("popcnt"); }

bool useSsse3 = ssse3Usable();  // set once; tests may turn it off
#endif

// Escapes `s` into `out` through a raw pointer: the string is grown in large steps to a bound
// that covers the rest, so the loop does no per-run append; plain 8-byte words are copied whole.
template <bool kAscii>
void quoted(std::string& out, std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* const end = p + s.size();
  std::size_t used = out.size();
  out.resize(used + s.size() + s.size() / 4 + 32);
  char* w = out.data() + used;
  char* limit = out.data() + out.size();
  // Room for `need` more bytes; regrowing assumes the rest of the input may need half again.
  const auto room = [&](std::size_t need) {
    if (static_cast<std::size_t>(limit - w) >= need) return;
    used = static_cast<std::size_t>(w - out.data());
    const auto rest = static_cast<std::size_t>(end - p);
    out.resize(used + need + rest + rest / 2 + 64);
    w = out.data() + used;
    limit = out.data() + out.size();
  };
  *w++ = '"';
  while (p < end) {
    room(16);
#if defined(__x86_64__)
    if (useSsse3) {
      quoteRunSsse3<kAscii>(p, end, w, limit);
      if (p == end) break;
      room(16);
    }
#endif
    if constexpr (std::endian::native == std::endian::little) {
      // A word at a time; room for a whole word escaped (16 bytes) is checked once per word.
      while (end - p >= 8 && limit - w >= 17) {
        std::uint64_t x;
        std::memcpy(&x, p, 8);
        const std::uint64_t hard = hardBytes<kAscii>(x);
        const std::uint64_t quotes = quoteBytes(x);
        if ((hard | quotes) == 0) {
          std::memcpy(w, p, 8);
          p += 8;
          w += 8;
          continue;
        }
        if (hard == 0) {
          w = copyQuoting(w, p, 8, quotes);
          p += 8;
          continue;
        }
        const auto k = static_cast<std::size_t>(std::countr_zero(hard) / 8);
        w = copyQuoting(w, p, k, quotes);
        p += k;
        break;
      }
      if (p == end) break;
      room(16);
    }
    const unsigned char c = *p;
    const std::uint8_t cls = kClass[c];
    if (cls == 0 && !(kAscii && c == 0x7f)) {
      *w++ = static_cast<char>(c);
      ++p;
      continue;
    }
    if (cls != 2) {
      w = writeEscape(w, c);  // 0x7f lands in the \u00XX default
      ++p;
      continue;
    }
    const auto [n, valid] = utf8Sequence(p, end);
    if (!valid) {
      if constexpr (kAscii) {
        w = writeU16(w, 0xfffd);
      } else {
        std::memcpy(w, "\xEF\xBF\xBD", 3);  // U+FFFD REPLACEMENT CHARACTER
        w += 3;
      }
    } else if constexpr (kAscii) {
      std::uint32_t cp = 0;
      if (n == 2) {
        cp = (c & 0x1Fu) << 6 | (p[1] & 0x3Fu);
      } else if (n == 3) {
        cp = (c & 0x0Fu) << 12 | (p[1] & 0x3Fu) << 6 | (p[2] & 0x3Fu);
      } else {
        cp = (c & 0x07u) << 18 | (p[1] & 0x3Fu) << 12 | (p[2] & 0x3Fu) << 6 | (p[3] & 0x3Fu);
      }
      if (cp <= 0xFFFF) {
        w = writeU16(w, cp);
      } else {
        w = writeU16(w, 0xD7C0u + (cp >> 10));
        w = writeU16(w, 0xDC00u + (cp & 0x3FFu));
      }
    } else {
      std::memcpy(w, p, n);
      w += n;
    }
    p += n;
  }
  room(1);
  *w++ = '"';
  out.resize(static_cast<std::size_t>(w - out.data()));
}

}  // namespace

bool setJsonSimd(bool enabled) {
#if defined(__x86_64__)
  const bool was = useSsse3;
  useSsse3 = enabled && ssse3Usable();
  return was;
#else
  static_cast<void>(enabled);
  return false;
#endif
}

void appendJsonEscape(std::string& out, unsigned char c) {
  char buf[8];
  out.append(buf, writeEscape(buf, c));
}

void appendJsonQuoted(std::string& out, std::string_view s) { quoted<false>(out, s); }

void appendJsonQuotedAscii(std::string& out, std::string_view s) { quoted<true>(out, s); }

void JsonObjectWriter::key(std::string_view k) {
  if (!first_) out_.push_back(',');
  first_ = false;
  out_.push_back('"');
  out_.append(k);
  out_.append("\":", 2);
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
