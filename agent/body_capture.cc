#include "agent/body_capture.h"

#include <simdjson.h>
#include <yajl/yajl_parse.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "agent/encoding.h"
#include "agent/json_writer.h"
#include "agent/tier.h"

namespace kscribe {
namespace {

// Deeper JSON than this is refused (not stored): Kubernetes objects, CRD schemas included, stay
// far below it, and it bounds the frame stack against hostile nesting.
constexpr std::size_t kMaxDepth = 1000;
// Output reserved up front for a body of unknown size (it grows as needed).
constexpr std::size_t kUnsizedReserve = 16 * 1024;
// Bytes inflated per zlib call.
constexpr std::size_t kInflateChunk = 64 * 1024;
constexpr std::string_view kRedactedJson = "\"[REDACTED]\"";

enum class MediaClass : std::uint8_t { kUnknown, kJson, kYaml, kText, kCbor, kBinary };

std::string lowerTrim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return out;
}

MediaClass mediaClass(std::string_view content_type) {
  const std::string media = lowerTrim(content_type.substr(0, content_type.find(';')));
  const std::string_view m = media;
  if (m.empty()) return MediaClass::kUnknown;
  if (m == "application/json" || m.ends_with("+json")) return MediaClass::kJson;
  if (m == "application/yaml" || m == "text/yaml" || m == "application/x-yaml" ||
      m.ends_with("+yaml")) {
    return MediaClass::kYaml;
  }
  if (m.starts_with("text/")) return MediaClass::kText;
  if (m == "application/cbor" || m == "application/cbor-seq" || m.ends_with("+cbor")) {
    return MediaClass::kCbor;
  }
  return MediaClass::kBinary;  // protobuf, CBOR, octet-stream, anything else
}

// Length of the longest prefix of s that ends on a UTF-8 character boundary (a cut body must not
// end inside a multi-byte character: the recorder writes it into a JSON string).
std::size_t utf8BoundaryPrefix(std::string_view s) {
  std::size_t n = s.size();
  for (std::size_t back = 0; back < 4 && back < n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - 1 - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
    if (back + 1 < len) return n - 1 - back;  // incomplete last character
    return n;
  }
  return n;
}

bool validUtf8(std::string_view s) {
  std::size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if ((c >> 5) == 0x6) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c >> 4) == 0xE) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c >> 3) == 0x1E) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

// Characters a JSON string must escape.
constexpr std::array<bool, 256> kNeedsEscape = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = true;
  t['"'] = true;
  t['\\'] = true;
  return t;
}();

// Appends s as a JSON string literal to dst, stopping once dst reaches limit bytes (the rest
// would be cut anyway).
void appendJsonString(std::string& dst, std::string_view s, std::size_t limit) {
  dst.push_back('"');
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) {
    if (dst.size() > limit) return;  // the caller cuts
    const char* run = p;
    while (p < end && !kNeedsEscape[static_cast<unsigned char>(*p)]) ++p;
    const std::size_t n = static_cast<std::size_t>(p - run);
    const std::size_t room = limit - dst.size();
    if (n > room) {
      dst.append(run, room + 1);  // one past the limit tells the caller to cut
      return;
    }
    dst.append(run, n);
    if (p == end) break;
    appendJsonEscape(dst, static_cast<unsigned char>(*p++));
  }
  dst.push_back('"');
}

bool equalsNoCase(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    if (c != lower[i]) return false;
  }
  return true;
}

// Keys the redactor cares about. Matched case-insensitively: a key Kubernetes' case-sensitive
// decoder would drop is still what the client meant, and still must not be stored.
enum class Key : std::uint8_t {
  kOther,
  kKind,
  kData,         // Secret.data
  kStringData,   // Secret.stringData
  kMetadata,     // object metadata: its annotations are a Secret's too
  kAnnotations,  // last-applied-configuration holds the whole manifest
  kItems,        // list items
  kValue,        // JSON patch operation value
  kCredential,   // token, password, kubeconfig key material: redacted wherever they appear
};

Key classifyKey(std::string_view k) {
  switch (k.size()) {
    case 4:
      if (equalsNoCase(k, "kind")) return Key::kKind;
      if (equalsNoCase(k, "data")) return Key::kData;
      break;
    case 5:
      if (equalsNoCase(k, "items")) return Key::kItems;
      if (equalsNoCase(k, "value")) return Key::kValue;
      if (equalsNoCase(k, "token")) return Key::kCredential;
      break;
    case 8:
      if (equalsNoCase(k, "metadata")) return Key::kMetadata;
      if (equalsNoCase(k, "password")) return Key::kCredential;
      if (equalsNoCase(k, "id-token")) return Key::kCredential;
      break;
    case 10:
      if (equalsNoCase(k, "stringdata")) return Key::kStringData;
      break;
    case 11:
      if (equalsNoCase(k, "annotations")) return Key::kAnnotations;
      if (equalsNoCase(k, "bearertoken")) return Key::kCredential;
      break;
    case 12:
      if (equalsNoCase(k, "access-token")) return Key::kCredential;
      break;
    case 13:
      if (equalsNoCase(k, "refresh-token")) return Key::kCredential;
      if (equalsNoCase(k, "client-secret")) return Key::kCredential;
      break;
    case 15:
      if (equalsNoCase(k, "client-key-data")) return Key::kCredential;
      break;
    default:
      break;
  }
  return Key::kOther;
}

enum class Kind : std::uint8_t { kUnknown, kSecret, kSecretList, kList, kOther };

Kind classifyKind(std::string_view v) {
  if (equalsNoCase(v, "secret")) return Kind::kSecret;
  if (equalsNoCase(v, "secretlist")) return Kind::kSecretList;
  if (v == "List") return Kind::kList;
  return Kind::kOther;
}

// What a container is to its parent: decides which object's kind governs a sensitive field.
enum class Role : std::uint8_t { kNone, kMetadata, kItemsArray, kItem };

struct Frame {
  bool is_object = false;
  bool first = true;  // no element written yet (comma handling)
  Kind kind = Kind::kUnknown;
  Key key = Key::kOther;  // current key (objects)
  Role role = Role::kNone;
};

// A value written plain whose fate waits on an object's kind ("data" before "kind").
struct Pending {
  std::size_t start = 0;  // [start, end) in the output
  std::size_t end = 0;
  std::size_t owner = 0;   // frame index of the object whose kind decides
  bool from_item = false;  // moved up from a kindless list item to its list
  bool side_full = false;
  bool closed = false;       // the value ended (end is valid)
  std::uint64_t leaves = 0;  // values [REDACTED] in side
  std::string side;          // the same value rendered redacted
};

enum class Scope : std::uint8_t { kNone, kRedact, kPending };

// Streaming JSON redactor over yajl's SAX parser. Writes compact JSON capped at `cap` bytes but
// parses to the end, so kinds that arrive late still redact what was written before them.
// A silent redactor makes every decision the same way but writes nothing: it only tells whether
// the text is valid JSON the emitting pass would leave unchanged (no value redacted, no Secret).
class JsonRedactor {
 public:
  // kEmit: writes the redacted text. kScan: scanClean() or scanCleanDom() only, writes nothing.
  enum class Mode : std::uint8_t { kEmit, kScan };
  // `reserve`: expected output size (the output grows past it if need be).
  JsonRedactor(std::size_t cap, bool secret_context, Mode mode, std::size_t reserve)
      : cap_(cap), secret_context_(secret_context), silent_(mode == Mode::kScan) {
    if (!silent_) out_.reserve(std::min(cap_, reserve));
    frames_.reserve(32);
  }
  ~JsonRedactor() {
    if (handle_ != nullptr) yajl_free(handle_);
  }
  JsonRedactor(const JsonRedactor&) = delete;
  JsonRedactor& operator=(const JsonRedactor&) = delete;

  void feed(const char* data, std::size_t size) {
    if (failed_) return;
    if (yajl_parse(yajl(), reinterpret_cast<const unsigned char*>(data), size) != yajl_status_ok) {
      fail();
    }
  }

  // Ends the parse. False when the text was not complete, valid JSON.
  bool complete() {
    if (!failed_ && yajl_complete_parse(yajl()) != yajl_status_ok) fail();
    if (!failed_ && !frames_.empty()) fail();
    redactUndecided();
    return !failed_ && values_ > 0;
  }

  // The text fed was only the kept prefix of a body another (silent) pass parsed whole: what
  // still waits on a kind is redacted (the safe way), and the output counts as cut.
  void endPrefix() {
    redactUndecided();
    cut_ = true;
  }

  // Whether `text`, a whole body, is valid JSON the emitting pass would store unchanged: yajl
  // parses it and drives the redactor's own handlers, which decide exactly as when emitting but
  // write nothing; clean means no value redacted, no Secret seen and nothing left undecided.
  // Mode kScan, fresh.
  bool scanClean(std::string_view text) {
    feed(text.data(), text.size());
    if (failed_ || yajl_complete_parse(yajl()) != yajl_status_ok) return false;
    return frames_.empty() && values_ > 0 && pending_.empty() && !sawSecret();
  }

  enum class Scan : std::uint8_t { kClean, kNotClean, kNotParsed };
  // scanClean() on a simdjson DOM: the same handlers driven in the same order (keys in document
  // order, duplicates included) from a document simdjson validated (RFC 8259, UTF-8) at SIMD
  // speed. kNotParsed when simdjson refused the text (several values as in a watch stream, a
  // number out of range, invalid JSON): the caller asks yajl. `text` should have
  // SIMDJSON_PADDING bytes of spare capacity (else simdjson copies it). Mode kScan, fresh.
  Scan scanCleanDom(const std::string& text) {
    simdjson::dom::element doc;
    if (domParser().parse(text).get(doc) != simdjson::SUCCESS) return Scan::kNotParsed;
    const bool clean = walk(doc) && frames_.empty() && pending_.empty() && !sawSecret();
    // A parser keeps the capacity of the largest document it saw: keep it small between
    // bodies (large ones pay their allocation each time).
    if (text.size() > kDomKeepCapacity) domParser() = simdjson::dom::parser();
    return clean ? Scan::kClean : Scan::kNotClean;
  }

  std::string& output() { return out_; }
  bool cut() const { return cut_; }
  std::uint64_t redactions() const { return redactions_; }
  // Saw anything that marks the body as secret-bearing (a Secret kind, a redacted field).
  bool sawSecret() const { return saw_secret_ || redactions_ > 0; }
  const std::string& error() const { return error_; }

 private:
  static JsonRedactor& self(void* ctx) { return *static_cast<JsonRedactor*>(ctx); }

  // Whatever still waits on a kind was written plain: decide it the safe way.
  void redactUndecided() {
    for (std::size_t i = pending_.size(); i-- > 0;) splice(pending_[i]);
    pending_.clear();
  }

  // yajl's parser, made on first use (a DOM walk never needs one).
  yajl_handle yajl() {
    if (handle_ == nullptr) {
      static const yajl_callbacks kCallbacks{onNull,   onBoolean,    nullptr,    nullptr,
                                             onNumber, onString,     onStartMap, onMapKey,
                                             onEndMap, onStartArray, onEndArray};
      handle_ = yajl_alloc(&kCallbacks, nullptr, this);
      yajl_config(handle_, yajl_allow_multiple_values, 1);
    }
    return handle_;
  }

  // Documents up to this size leave their parser's buffers in place for the next body.
  static constexpr std::size_t kDomKeepCapacity = 256 * 1024;
  static simdjson::dom::parser& domParser() {
    thread_local simdjson::dom::parser parser;
    return parser;
  }

  static bool isContainer(simdjson::dom::element e) {
    const auto type = e.type();
    return type == simdjson::dom::element_type::OBJECT ||
           type == simdjson::dom::element_type::ARRAY;
  }

  // Feeds one DOM value to the yajl handlers; false where a handler stops the parse. Only for
  // the silent mode: scalars' text is not needed. Outside every scope, a scalar under a key the
  // redactor does not know (or in an array) changes nothing the handlers track (the silent mode
  // writes no separators), so it is skipped: most of a body's values are such.
  bool walk(simdjson::dom::element e) {
    using Type = simdjson::dom::element_type;
    switch (e.type()) {
      case Type::OBJECT: {
        if (!onStartMap(this)) return false;
        const simdjson::dom::object object = e.get_object().value_unsafe();
        for (const simdjson::dom::key_value_pair field : object) {
          if (scope_ == Scope::kNone && !isContainer(field.value)) {
            const Key key = classifyKey(field.key);
            if (key == Key::kOther) {
              frames_.back().key = key;
              frames_.back().first = false;
              continue;
            }
          }
          const auto* key = reinterpret_cast<const unsigned char*>(field.key.data());
          if (!onMapKey(this, key, field.key.size()) || !walk(field.value)) return false;
        }
        return onEndMap(this) != 0;
      }
      case Type::ARRAY: {
        if (!onStartArray(this)) return false;
        const simdjson::dom::array array = e.get_array().value_unsafe();
        for (const simdjson::dom::element item : array) {
          if (scope_ == Scope::kNone && !isContainer(item)) {
            frames_.back().first = false;
            continue;
          }
          if (!walk(item)) return false;
        }
        return onEndArray(this) != 0;
      }
      case Type::STRING: {
        const std::string_view v = e.get_string().value_unsafe();
        return onString(this, reinterpret_cast<const unsigned char*>(v.data()), v.size()) != 0;
      }
      case Type::BOOL:
        return onBoolean(this, e.get_bool().value_unsafe()) != 0;
      case Type::NULL_VALUE:
        return onNull(this) != 0;
      default:  // numbers
        return onNumber(this, "", 0) != 0;
    }
  }

  void fail() {
    if (failed_) return;
    failed_ = true;
    if (error_.empty()) {
      unsigned char* msg = yajl_get_error(yajl(), 0, nullptr, 0);
      error_ = reinterpret_cast<const char*>(msg);
      yajl_free_error(yajl(), msg);
    }
  }

  // Writes to the output, cut at cap_.
  void emit(std::string_view s) {
    if (cut_ || silent_) return;
    const std::size_t room = cap_ - out_.size();
    if (s.size() > room) {
      out_.append(s.data(), room);
      cut_ = true;
    } else {
      out_.append(s);
    }
  }
  // Structural text: written to the output and, inside a pending scope, to its redacted twin.
  void emitBoth(std::string_view s) {
    emit(s);
    if (scope_ == Scope::kPending) emitSide(s);
  }
  // The hot path for one structural character.
  void emitChar(char c) {
    if (silent_) return;
    if (!cut_) {
      if (out_.size() < cap_) {
        out_.push_back(c);
      } else {
        cut_ = true;
      }
    }
    if (scope_ == Scope::kPending) emitSide(std::string_view(&c, 1));
  }
  void emitSide(std::string_view s) {
    if (pending_index_ == kNoPending || silent_) return;
    Pending& p = pending_[pending_index_];
    if (p.side_full) return;
    p.side.append(s);
    if (p.side.size() > cap_ - p.start) p.side_full = true;
  }
  void emitString(std::string_view s) {
    if (cut_ || silent_) return;
    appendJsonString(out_, s, cap_);
    if (out_.size() > cap_) {
      out_.resize(cap_);
      cut_ = true;
    }
  }

  // Called at the start of every value: separators, and whether this value opens a scope.
  void beginValue() {
    if (frames_.empty()) {
      if (values_++ > 0) emit("\n");  // watch stream: one event per line, as on the wire
    } else {
      Frame& parent = frames_.back();
      if (!parent.is_object) {
        if (!parent.first) emitChar(',');
        parent.first = false;
      }
      if (scope_ == Scope::kNone && parent.is_object && parent.key != Key::kOther) openScope();
    }
  }

  void openScope() {
    const std::size_t d = frames_.size() - 1;
    const Frame& obj = frames_[d];
    std::size_t owner = d;
    switch (obj.key) {
      case Key::kCredential:
        scope_ = Scope::kRedact;
        break;
      case Key::kValue:
        scope_ = secret_context_ ? Scope::kRedact : Scope::kNone;
        break;
      case Key::kData:
      case Key::kStringData:
        scope_ = secretness(d);
        break;
      case Key::kAnnotations:
        if (obj.role != Role::kMetadata || d == 0) return;
        owner = d - 1;
        scope_ = secretness(owner);
        break;
      default:
        return;
    }
    if (scope_ == Scope::kNone) return;
    scope_depth_ = frames_.size();
    if (scope_ == Scope::kPending) {
      if (cut_) {
        scope_ = Scope::kRedact;  // nothing more is written: no need to remember anything
        return;
      }
      pending_index_ = pending_.size();
      Pending& p = pending_.emplace_back();
      p.start = out_.size();
      p.owner = owner;
    }
  }

  // Does object d hold a Secret (or its metadata)?
  Scope secretness(std::size_t d) const {
    if (secret_context_) return Scope::kRedact;
    const Frame& f = frames_[d];
    switch (f.kind) {
      case Kind::kSecret:
        return Scope::kRedact;
      case Kind::kUnknown:
        // An item of a SecretList is a Secret whether or not it says so.
        if (f.role == Role::kItem && d >= 2 && frames_[d - 2].kind == Kind::kSecretList) {
          return Scope::kRedact;
        }
        return Scope::kPending;
      default:
        return Scope::kNone;
    }
  }

  // Called after every complete value: closes the scope it opened.
  void endValue() {
    if (scope_ != Scope::kNone && frames_.size() == scope_depth_) {
      if (scope_ == Scope::kPending && pending_index_ != kNoPending) {
        pending_[pending_index_].end = out_.size();
        pending_[pending_index_].closed = true;
      }
      scope_ = Scope::kNone;
      pending_index_ = kNoPending;
    }
  }

  void scalar(std::string_view plain) {
    beginValue();
    switch (scope_) {
      case Scope::kNone:
        emit(plain);
        break;
      case Scope::kRedact:
        if (!cut_) ++redactions_;
        emit(kRedactedJson);
        break;
      case Scope::kPending:
        emit(plain);
        emitSide(kRedactedJson);
        if (pending_index_ != kNoPending) ++pending_[pending_index_].leaves;
        break;
    }
    endValue();
  }

  static int onNull(void* ctx) {
    auto& r = self(ctx);
    r.beginValue();
    r.emitBoth("null");  // null carries nothing: kept as is, also in Secrets
    r.endValue();
    return 1;
  }
  static int onBoolean(void* ctx, int b) {
    self(ctx).scalar(b ? "true" : "false");
    return 1;
  }
  static int onNumber(void* ctx, const char* s, size_t len) {
    self(ctx).scalar(std::string_view(s, len));
    return 1;
  }
  static int onString(void* ctx, const unsigned char* s, size_t len) {
    auto& r = self(ctx);
    const std::string_view v(reinterpret_cast<const char*>(s), len);
    if (!r.frames_.empty()) {
      Frame& f = r.frames_.back();
      if (f.is_object && f.key == Key::kKind) {
        if (f.kind != Kind::kUnknown) {
          // Go's decoder keeps the last duplicate: a second kind could turn a ConfigMap already
          // written plain into a Secret. Refuse the body instead, and as one that may hold a
          // Secret: which kind a reader keeps is not ours to guess.
          r.error_ = "duplicate kind";
          r.saw_secret_ = true;
          return 0;
        }
        f.kind = classifyKind(v);
        if (f.kind == Kind::kSecret || f.kind == Kind::kSecretList) r.saw_secret_ = true;
        r.resolve(r.frames_.size() - 1);
      }
    }
    r.beginValue();  // may open a scope for this very string
    if (r.scope_ == Scope::kNone) {
      r.emitString(v);
    } else {
      r.scopedString(v);
    }
    r.endValue();
    return 1;
  }
  void scopedString(std::string_view v) {
    if (scope_ == Scope::kRedact) {
      if (!cut_) ++redactions_;
      emit(kRedactedJson);
    } else {
      emitString(v);
      emitSide(kRedactedJson);
      if (pending_index_ != kNoPending) ++pending_[pending_index_].leaves;
    }
  }

  Role childRole() const {
    if (frames_.empty()) return Role::kNone;
    const Frame& parent = frames_.back();
    if (parent.is_object) {
      if (parent.key == Key::kMetadata) return Role::kMetadata;
      if (parent.key == Key::kItems) return Role::kItemsArray;
      return Role::kNone;
    }
    return parent.role == Role::kItemsArray ? Role::kItem : Role::kNone;
  }

  bool push(bool is_object) {
    if (frames_.size() >= kMaxDepth) {
      error_ = "nesting too deep";
      return false;
    }
    const Role role = childRole();
    beginValue();
    Frame& f = frames_.emplace_back();
    f.is_object = is_object;
    f.role = role;
    emitChar(is_object ? '{' : '[');
    return true;
  }

  static int onStartMap(void* ctx) { return self(ctx).push(true) ? 1 : 0; }
  static int onStartArray(void* ctx) { return self(ctx).push(false) ? 1 : 0; }

  static int onMapKey(void* ctx, const unsigned char* s, size_t len) {
    auto& r = self(ctx);
    Frame& f = r.frames_.back();
    const std::string_view k(reinterpret_cast<const char*>(s), len);
    f.key = r.scope_ == Scope::kNone ? classifyKey(k) : Key::kOther;
    const bool comma = !f.first;
    f.first = false;
    if (r.silent_) return 1;
    if (r.scope_ != Scope::kPending) {
      // Hot path: separator, key and colon in one go.
      if (r.cut_) return 1;
      if (comma) r.out_.push_back(',');
      appendJsonString(r.out_, k, r.cap_);
      r.out_.push_back(':');
      if (r.out_.size() > r.cap_) {
        r.out_.resize(r.cap_);
        r.cut_ = true;
      }
      return 1;
    }
    if (comma) r.emitBoth(",");
    {
      // Keys stay in a Secret: the same escaped text goes to both renderings.
      std::string escaped;
      appendJsonString(escaped, k, SIZE_MAX);
      r.emit(escaped);
      r.emitSide(escaped);
    }
    r.emitBoth(":");
    return 1;
  }

  static int onEndMap(void* ctx) {
    auto& r = self(ctx);
    r.emitChar('}');
    const std::size_t d = r.frames_.size() - 1;
    if (r.frames_[d].kind == Kind::kUnknown) r.closeKindless(d);
    r.frames_.pop_back();
    r.endValue();
    return 1;
  }
  static int onEndArray(void* ctx) {
    auto& r = self(ctx);
    r.emitChar(']');
    r.frames_.pop_back();
    r.endValue();
    return 1;
  }

  // Object d's kind just became known: decide what waited on it.
  void resolve(std::size_t d) {
    const Kind kind = frames_[d].kind;
    while (!pending_.empty() && pending_.back().owner == d) {
      Pending& p = pending_.back();
      const bool redact = kind == Kind::kSecret ||
                          (p.from_item && (kind == Kind::kSecretList || kind == Kind::kList));
      if (redact) splice(p);
      pending_.pop_back();
    }
  }

  // Object d ends without a kind.
  void closeKindless(std::size_t d) {
    // Pending entries owned by d are the tail (see resolve); walk it from the end.
    std::size_t i = pending_.size();
    while (i > 0 && pending_[i - 1].owner == d) --i;
    if (i == pending_.size()) return;
    const Frame& f = frames_[d];
    if (f.role == Role::kItem && d >= 2) {
      // A kindless list item: its list's kind decides. Known already: decide now.
      const std::size_t list = d - 2;
      for (std::size_t k = i; k < pending_.size(); ++k) {
        pending_[k].owner = list;
        pending_[k].from_item = true;
      }
      if (frames_[list].kind != Kind::kUnknown) resolve(list);
      return;
    }
    // A kindless object outside a list is whatever the path says (not secrets here): its own
    // fields stay; items that waited on this kindless list are redacted (cannot tell).
    for (std::size_t k = pending_.size(); k-- > i;) {
      if (pending_[k].from_item) splice(pending_[k]);
    }
    pending_.resize(i);
  }

  // Replaces a pending value's plain text by its redacted twin.
  void splice(Pending& p) {
    redactions_ += p.leaves;
    saw_secret_ = true;
    if (p.start >= out_.size()) return;
    const std::size_t end = p.closed ? std::min(p.end, out_.size()) : out_.size();
    out_.replace(p.start, end - p.start, p.side);
    if (out_.size() > cap_) {
      out_.resize(cap_);
      cut_ = true;
    }
    // A side rendering that was itself capped means the output is cut at or before its end.
    if (p.side_full) {
      out_.resize(std::min(out_.size(), cap_));
      cut_ = true;
    }
    // Entries after this one sit later in the output; none remain after a splice of the tail
    // except those already handled by the caller in reverse order.
  }

  static constexpr std::size_t kNoPending = SIZE_MAX;

  yajl_handle handle_ = nullptr;
  std::size_t cap_;
  bool secret_context_;
  bool silent_;
  std::vector<Frame> frames_;
  std::vector<Pending> pending_;
  std::string out_;
  std::string error_;
  Scope scope_ = Scope::kNone;
  std::size_t scope_depth_ = 0;
  std::size_t pending_index_ = kNoPending;
  std::uint64_t values_ = 0;
  std::uint64_t redactions_ = 0;
  bool cut_ = false;
  bool failed_ = false;
  bool saw_secret_ = false;
};

// Finds "Secret" in a byte stream across chunk boundaries (for encodings we cannot parse).
class WordScanner {
 public:
  explicit WordScanner(std::string_view word) : word_(word) {}
  void feed(std::string_view chunk) {
    if (found_ || chunk.empty()) return;
    // Check the seam with the previous chunk's tail, then the chunk itself.
    std::string seam = tail_;
    seam.append(chunk.substr(0, std::min(chunk.size(), word_.size() - 1)));
    if (seam.find(word_) != std::string::npos || chunk.find(word_) != std::string_view::npos) {
      found_ = true;
      return;
    }
    const std::size_t keep = word_.size() - 1;
    if (chunk.size() >= keep) {
      tail_.assign(chunk.substr(chunk.size() - keep));
    } else {
      tail_.append(chunk);
      if (tail_.size() > keep) tail_.erase(0, tail_.size() - keep);
    }
  }
  bool found() const { return found_; }

 private:
  std::string_view word_;
  std::string tail_;
  bool found_ = false;
};

}  // namespace

class BodyCapture::Impl {
 public:
  explicit Impl(BodyOptions options) : options_(std::move(options)) {
    media_ = mediaClass(options_.content_type);
    const std::string encoding = lowerTrim(options_.content_encoding);
    if (encoding == "gzip" || encoding == "x-gzip" || encoding == "deflate") {
      inflating_ = true;
      // 16+: gzip wrapper only; 15: zlib wrapper (HTTP "deflate").
      const int bits = encoding == "deflate" ? MAX_WBITS : 16 + MAX_WBITS;
      if (inflateInit2(&zs_, bits) != Z_OK) fail("[BODY NOT RECORDED: cannot start inflate]");
      zlib_open_ = true;
    } else if (!encoding.empty() && encoding != "identity") {
      fail("[BODY NOT RECORDED: unsupported Content-Encoding " + encoding + "]");
    }
    if (options_.request != nullptr) {
      path_secret_ = pathMayHoldSecret(*options_.request);
      path_credential_ = pathMayHoldCredential(*options_.request);
    } else {
      path_secret_ = path_credential_ = true;  // unknown path: assume the worst
    }
  }
  ~Impl() {
    if (zlib_open_) inflateEnd(&zs_);
  }

  void feed(std::span<const char> chunk) {
    wire_size_ += chunk.size();
    if (failed_ || chunk.empty()) return;
    if (!inflating_) {
      consume(std::string_view(chunk.data(), chunk.size()));
      return;
    }
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(chunk.data()));
    zs_.avail_in = static_cast<uInt>(chunk.size());
    std::array<char, kInflateChunk> buf;
    while (zs_.avail_in > 0 && !failed_) {
      if (stream_end_) {
        // Concatenated gzip members (RFC 1952 2.2) continue the same body.
        if (inflateReset(&zs_) != Z_OK) return fail("[BODY NOT RECORDED: inflate failed]");
        stream_end_ = false;
      }
      zs_.next_out = reinterpret_cast<Bytef*>(buf.data());
      zs_.avail_out = static_cast<uInt>(buf.size());
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
        return fail("[BODY NOT RECORDED: corrupt compressed body]");
      }
      const std::size_t produced = buf.size() - zs_.avail_out;
      if (produced > 0) consume(std::string_view(buf.data(), produced));
      if (rc == Z_STREAM_END) stream_end_ = true;
      if (rc == Z_BUF_ERROR && produced == 0) break;
    }
  }

  Result finish() {
    if (verbatim_ && !failed_) finishVerbatim();
    Result r;
    r.wire_size = wire_size_;
    r.content_type = options_.content_type;
    if (options_.is_request && restart_probe_.size() <= kMaxRestartPatchSize &&
        !restart_probe_.empty()) {
      r.rollout_restart_patch = isRolloutRestartPatch(restart_probe_);
    }
    if (inflating_ && !failed_ && wire_size_ > 0 && !stream_end_) {
      r.incomplete = true;
      if (mightHoldSecret()) fail("[BODY NOT RECORDED: compressed body ended early]");
    }
    if (failed_) {
      r.omitted_reason = reason_;
      r.incomplete = true;
      return r;
    }
    if (decoded_size_ == 0) return r;
    if (verbatim_) {
      r.encoding = "text";
      r.truncated = scan_ != nullptr;  // kept past the cap: raw_ is the cut prefix
      r.body = std::move(raw_);
      return r;
    }
    if (json_) return finishJson(r);
    return finishOpaque(r);
  }

 private:
  bool mightHoldSecret() const {
    if (!options_.redact_secrets) return false;
    if (path_credential_ || scanner_.found() || token_scanner_.found()) return true;
    return (json_ && json_->sawSecret()) || (scan_ && scan_->sawSecret());
  }

  void fail(std::string reason) {
    if (failed_) return;
    failed_ = true;
    reason_ = std::move(reason);
    json_.reset();
    scan_.reset();
    raw_.clear();
    raw_.shrink_to_fit();
  }

  // Decoded (decompressed) bytes.
  void consume(std::string_view data) {
    decoded_size_ += data.size();
    if (decoded_size_ > options_.max_decompressed_size && inflating_) {
      return fail("[BODY NOT RECORDED: decompressed size exceeds " +
                  std::to_string(options_.max_decompressed_size) + " bytes]");
    }
    if (options_.is_request && restart_probe_.size() <= kMaxRestartPatchSize) {
      restart_probe_.append(data.substr(0, kMaxRestartPatchSize + 1 - restart_probe_.size()));
    }
    if (!decided_) {
      // Sniff the first non-blank byte: JSON is also YAML (kubectl's server-side apply sends
      // application/apply-patch+yaml with a JSON body), and bodies may come without a type.
      const auto pos = data.find_first_not_of(" \t\r\n");
      if (pos == std::string_view::npos) {
        raw_.append(data);
        return;
      }
      decided_ = true;
      const char c = data[pos];
      const bool looks_json = c == '{' || c == '[';
      // A body that looks like JSON is redacted as JSON whatever its declared type (text/*
      // aside, kept as text): a mislabelled body must not slip past the redactor.
      const bool json = options_.redact_secrets && (media_ == MediaClass::kJson ||
                                                    (looks_json && media_ != MediaClass::kText));
      if (json) {
        const std::size_t cap = options_.max_body_size;
        // No verbatim copy on a path whose bodies are Secrets (there is nearly always something
        // to redact).
        const bool sized = !inflating_ && options_.content_length.has_value();
        if (path_secret_ || !options_.verbatim) {
          startEmitting(sized ? *options_.content_length : kUnsizedReserve);
        } else {
          // Kept (up to the cap) until finish() decides (see finishVerbatim).
          verbatim_ = true;
          if (sized) {
            // Spare bytes for simdjson's padding: it then parses the body in place.
            raw_.reserve(
                static_cast<std::size_t>(std::min<std::uint64_t>(*options_.content_length, cap)) +
                simdjson::SIMDJSON_PADDING);
          }
        }
      }
    }
    if (verbatim_) {
      const std::size_t cap = options_.max_body_size;
      if (!scan_) {
        if (raw_.size() + data.size() <= cap) {
          raw_.append(data);
          return;
        }
        // It will be cut: only its first max_body_size bytes are kept, and a silent pass over
        // all of it (kinds may come late) tells at the end whether they may be stored as is.
        scan_ = std::make_unique<JsonRedactor>(cap, path_secret_, JsonRedactor::Mode::kScan, 0);
        scan_->feed(raw_.data(), raw_.size());
        // Leading blanks are kept before the body's type is known, even past the cap.
        if (raw_.size() > cap) raw_.resize(cap);
      }
      scan_->feed(data.data(), data.size());
      const std::size_t kept = std::min(data.size(), cap - raw_.size());
      raw_.append(data.substr(0, kept));
      // Blanks past the cap cut nothing (the emitting pass drops them too).
      if (blank_past_cap_ && data.find_first_not_of(" \t\r\n", kept) != std::string_view::npos) {
        blank_past_cap_ = false;
      }
      return;
    }
    if (json_) {
      json_->feed(data.data(), data.size());
      return;
    }
    scanner_.feed(data);
    token_scanner_.feed(data);
    if (media_ == MediaClass::kYaml) {
      // YAML escapes ("\x53ecret") and tags (!!binary) can spell a kind without the word.
      if (data.find('\\') != std::string_view::npos) yaml_escape_ = true;
      tag_scanner_.feed(data);
    }
    // Keep one byte past the cap so finish() knows it must cut.
    const std::size_t keep = options_.max_body_size + 1;
    if (raw_.size() < keep) raw_.append(data.substr(0, keep - raw_.size()));
  }

  // A whole JSON body within the cap, kept as received: valid JSON in which the redactor would
  // change nothing is stored as is (blank edges trimmed); anything else, or a body that merely
  // looked like JSON, goes through the emitting pass, which decides as it always has.
  void finishVerbatim() {
    if (scan_) return finishCutVerbatim();
    using Scan = JsonRedactor::Scan;
    Scan scan = JsonRedactor(options_.max_body_size, path_secret_, JsonRedactor::Mode::kScan, 0)
                    .scanCleanDom(raw_);
    if (scan == Scan::kNotParsed) {
      JsonRedactor yajl(options_.max_body_size, path_secret_, JsonRedactor::Mode::kScan, 0);
      scan = yajl.scanClean(raw_) ? Scan::kClean : Scan::kNotClean;
    }
    if (scan == Scan::kClean) {
      raw_.resize(raw_.find_last_not_of(" \t\r\n") + 1);  // there is a value: found
      const auto first = raw_.find_first_not_of(" \t\r\n");
      if (first > 0) raw_.erase(0, first);
      return;
    }
    startEmitting(raw_.size() + raw_.size() / 8 + 64);
  }

  // A JSON body past the cap: the silent pass saw all of it, raw_ holds its first max_body_size
  // bytes. When nothing in the whole body would be redacted, they are stored as received (cut on
  // a character boundary, with the marker). Otherwise the emitting pass writes the kept prefix;
  // anything there whose fate waited on a kind beyond it is redacted.
  void finishCutVerbatim() {
    if (blank_past_cap_) {
      // Only blanks were left out: the whole body is kept, as if it had fitted.
      scan_.reset();
      return finishVerbatim();
    }
    scan_ok_ = scan_->complete();  // also decides, the safe way, what never got its kind
    if (scan_ok_ && !scan_->sawSecret()) {
      raw_.resize(utf8BoundaryPrefix(raw_));
      raw_.erase(0, std::min(raw_.size(), raw_.find_first_not_of(" \t\r\n")));
      raw_ += truncationMarker();
      return;
    }
    startEmitting(raw_.size());
  }

  // Starts the emitting pass on everything kept so far.
  void startEmitting(std::size_t reserve) {
    json_ = std::make_unique<JsonRedactor>(options_.max_body_size, path_secret_,
                                           JsonRedactor::Mode::kEmit, reserve);
    if (!raw_.empty()) json_->feed(raw_.data(), raw_.size());
    verbatim_ = false;
    raw_.clear();
    raw_.shrink_to_fit();
  }

  std::string truncationMarker() const { return "[TRUNCATED at " + options_.max_body_text + "]"; }

  Result finishJson(Result& r) {
    bool ok = false;
    if (scan_) {
      json_->endPrefix();  // it saw only the kept prefix; the silent pass saw the whole body
      ok = scan_ok_;
    } else {
      ok = json_->complete();
    }
    const std::string& error = scan_ ? scan_->error() : json_->error();
    r.redactions = json_->redactions();
    r.redacted = r.redactions > 0;
    std::string& out = json_->output();
    if (!ok) {
      r.incomplete = true;
      if (mightHoldSecret() || options_.is_request) {
        r.redacted = false;
        r.redactions = 0;
        r.omitted_reason =
            "[BODY NOT RECORDED: not valid JSON (" + error + ") and it may hold a Secret]";
        return r;
      }
    }
    r.encoding = "text";
    if (json_->cut() || !ok) {
      out.resize(utf8BoundaryPrefix(out));
      r.truncated = true;
      out += ok ? truncationMarker() : "[INCOMPLETE: not valid JSON]";
    }
    r.body = std::move(out);
    return r;
  }

  Result finishOpaque(Result& r) {
    const bool yaml = media_ == MediaClass::kYaml;
    const bool binary = media_ == MediaClass::kBinary || media_ == MediaClass::kCbor;
    // Without a parser, the words "Secret" and "Token" are the tell: protobuf and CBOR carry the
    // kind as raw text, YAML too unless escaped or tagged. CBOR may split a string into chunks
    // ("Sec" "ret"), so CBOR the client sent is never kept. text/* is never decoded into an object.
    const bool unsafe =
        path_credential_ ||
        (media_ != MediaClass::kText && (scanner_.found() || token_scanner_.found())) ||
        (yaml && (yaml_escape_ || tag_scanner_.found())) ||
        (options_.is_request && media_ == MediaClass::kCbor);
    if (options_.redact_secrets && unsafe) {
      r.omitted_reason =
          "[BODY NOT RECORDED: " +
          (options_.content_type.empty() ? std::string("untyped body") : options_.content_type) +
          " may hold a Secret or credential and cannot be redacted]";
      return r;
    }
    const std::size_t cap = options_.max_body_size;
    const bool text_like = !binary && validUtf8(std::string_view(raw_).substr(
                                          0, utf8BoundaryPrefix(raw_.substr(0, cap))));
    if (text_like) {
      r.encoding = "text";
      if (raw_.size() > cap || decoded_size_ > cap) {
        raw_.resize(utf8BoundaryPrefix(raw_.substr(0, cap)));
        raw_ += truncationMarker();
        r.truncated = true;
      }
      r.body = std::move(raw_);
      return r;
    }
    r.encoding = "base64";
    const std::size_t raw_cap = cap / 4 * 3;  // base64 text stays within max_body_size
    if (raw_.size() > raw_cap || decoded_size_ > raw_cap) {
      r.body = base64(std::string_view(raw_).substr(0, raw_cap)) + truncationMarker();
      r.truncated = true;
    } else {
      r.body = base64(raw_);
    }
    return r;
  }

  BodyOptions options_;
  MediaClass media_ = MediaClass::kUnknown;
  bool path_secret_ = true;
  bool path_credential_ = true;
  bool inflating_ = false;
  bool zlib_open_ = false;
  bool stream_end_ = false;
  z_stream zs_{};
  bool decided_ = false;
  bool failed_ = false;
  bool yaml_escape_ = false;
  std::string reason_;
  std::uint64_t wire_size_ = 0;
  std::uint64_t decoded_size_ = 0;
  std::unique_ptr<JsonRedactor> json_;
  // A JSON body kept in raw_ (at most max_body_size bytes) until finish(); after it, the body to
  // store as is.
  bool verbatim_ = false;
  // Past the cap: the silent pass over the whole body, and (at finish) whether it parsed.
  std::unique_ptr<JsonRedactor> scan_;
  bool scan_ok_ = false;
  bool blank_past_cap_ = true;  // nothing but blanks past the cap so far
  std::string raw_;
  std::string restart_probe_;
  WordScanner scanner_{"Secret"};
  WordScanner token_scanner_{"Token"};  // TokenRequest, TokenReview kinds
  WordScanner tag_scanner_{"!!"};       // YAML tags
};

BodyCapture::BodyCapture(BodyOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
BodyCapture::~BodyCapture() = default;
BodyCapture::BodyCapture(BodyCapture&&) noexcept = default;
BodyCapture& BodyCapture::operator=(BodyCapture&&) noexcept = default;
void BodyCapture::feed(std::span<const char> chunk) { impl_->feed(chunk); }
BodyCapture::Result BodyCapture::finish() { return impl_->finish(); }

}  // namespace kscribe
