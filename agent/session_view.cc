#include "agent/session_view.h"

#include <algorithm>
#include <cstdio>

namespace kscribe {

using nlohmann::json;
using nlohmann::ordered_json;

namespace {

constexpr const char* kReset = "\x1b[0m";

const char* tierColor(int tier) {
  switch (tier) {
    case 1:
      return "\x1b[36m";  // cyan
    case 2:
      return "\x1b[33m";  // yellow
    case 3:
      return "\x1b[31m";  // red
    case 4:
      return "\x1b[1;97;41m";  // bold white on red
    default:
      return "";
  }
}

bool flag(const json& j, const std::string& key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

// "2026-02-10T14:30:22.001Z" -> "14:30:22.001".
std::string clockTime(const std::string& ts) { return ts.size() >= 23 ? ts.substr(11, 12) : ts; }

// "2026-02-10T14:30:22.001Z" -> "2026-02-10 14:30:22Z".
std::string shortStamp(const std::string& ts) {
  if (ts.size() < 19) return ts.empty() ? "-" : ts;
  return ts.substr(0, 10) + " " + ts.substr(11, 8) + "Z";
}

std::string sizeOrDash(std::uint64_t n) { return n == 0 ? "-" : humanBytes(n); }

// A table whose columns are as wide as their widest cell; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back({std::move(header), -1}); }
  void add(std::vector<std::string> cells, int tier) { rows_.push_back({std::move(cells), tier}); }
  void print(std::ostream& out, bool color) const {
    std::vector<std::size_t> width;
    for (const auto& r : rows_)
      for (std::size_t i = 0; i < r.cells.size(); ++i) {
        if (width.size() <= i) width.push_back(0);
        width[i] = std::max(width[i], displayWidth(r.cells[i]));
      }
    for (std::size_t n = 0; n < rows_.size(); ++n) {
      const auto& r = rows_[n];
      std::string line;
      for (std::size_t i = 0; i < r.cells.size(); ++i) {
        line += r.cells[i];
        if (i + 1 < r.cells.size())
          line += std::string(width[i] - displayWidth(r.cells[i]) + 2, ' ');
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      const char* c = n == 0 ? "\x1b[1m" : tierColor(r.tier);
      if (color && *c) {
        out << c << line << kReset << "\n";
      } else {
        out << line << "\n";
      }
    }
  }

 private:
  // Counts UTF-8 code points, which is right for the ASCII and Latin text these tables hold.
  static std::size_t displayWidth(const std::string& s) {
    std::size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
  }
  struct Row {
    std::vector<std::string> cells;
    int tier;
  };
  std::vector<Row> rows_;
};

std::string processLine(const json& p) {
  if (!p.is_object()) return "not recorded";
  const std::string status = jsonStr(p, "attribution");
  if (status != "attributed") return status.empty() ? "unknown" : status;
  std::string s = jsonStr(p, "comm") + " (pid " + std::to_string(jsonNum<long long>(p, "tgid")) +
                  ", uid " + std::to_string(jsonNum<long long>(p, "uid")) + ") " +
                  jsonStr(p, "exe");
  if (auto c = jsonStr(p, "container_id"); !c.empty()) s += " container " + c.substr(0, 12);
  if (auto u = jsonStr(p, "pod_uid"); !u.empty()) s += " pod " + u;
  if (auto cg = jsonStr(p, "cgroup_path"); !cg.empty()) s += " cgroup " + cg;
  if (flag(p, "exited")) s += " (exited)";
  return safeText(s);
}

std::string pathWithQuery(const json& r) {
  std::string p = jsonStr(r, "path");
  if (auto q = jsonStr(r, "query"); !q.empty()) p += "?" + q;
  return safeText(p);
}

// ordered_json keeps the keys in the order the API server wrote them.
std::string prettyJsonOrRaw(const std::string& text) {
  ordered_json j = ordered_json::parse(text, nullptr, false);
  if (!j.is_discarded()) return j.dump(2, ' ', false, json::error_handler_t::replace);
  // A watch stream: one JSON event per line.
  std::string out, line;
  std::size_t start = 0;
  bool all_json = true;
  int events = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    line = text.substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    ordered_json e = ordered_json::parse(line, nullptr, false);
    if (e.is_discarded()) {
      all_json = false;
      break;
    }
    out += e.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
    ++events;
  }
  if (all_json && events > 0) return out.substr(0, out.size() - 1);
  return text;
}

std::string highlightMarkers(const std::string& text) {
  return wrapMarkers(text, [](std::string_view marker, bool) {
    return "\x1b[1;35m" + std::string(marker) + kReset;
  });
}

}  // namespace

std::string wrapMarkers(const std::string& text,
                        const std::function<std::string(std::string_view, bool)>& wrap) {
  std::string out;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t a = text.find("[REDACTED]", pos);
    const std::size_t b = text.find("[TRUNCATED at ", pos);
    const std::size_t at = std::min(a, b);
    if (at == std::string::npos) break;
    // A truncation marker ends at its ']' (or, cut itself, at the end of the text).
    const std::size_t end = at == a ? at + 10 : std::min(text.find(']', at), text.size() - 1) + 1;
    out.append(text, pos, at - pos);
    out += wrap(std::string_view(text).substr(at, end - at), at == a);
    pos = end;
  }
  return out.append(text, pos);
}

std::string safeText(const std::string& s, bool keep_newlines) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (keep_newlines && (c == '\n' || c == '\t')) {
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9F) {
      // C1 controls (U+0080..U+009F) include CSI, which terminals obey as ESC [.
      char buf[12];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(s[i + 1]));
      out += buf;
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

ordered_json summaryJson(const SessionSummary& s) {
  ordered_json j;
  j["id"] = s.id;
  j["agent"] = s.agent;
  j["workload_kind"] = s.workload_kind;
  j["workload"] = s.workload;
  j["started"] = s.started;
  j["ended"] = s.ended.empty() ? ordered_json(nullptr) : ordered_json(s.ended);
  j["last_activity"] = s.last_activity;
  j["duration_ms"] = s.duration_ms;
  j["requests"] = s.requests;
  j["highest_tier"] = s.highest_tier < 0 ? ordered_json(nullptr) : ordered_json(s.highest_tier);
  j["highest_tier_name"] =
      s.highest_tier < 0 ? ordered_json(nullptr) : ordered_json(tierLabel(s.highest_tier));
  j["bytes"] = s.bytes;
  j["status"] = s.status;
  j["close_reason"] = s.close_reason.empty() ? ordered_json(nullptr) : ordered_json(s.close_reason);
  j["jsonl"] = s.jsonl.string();
  j["manifest"] = s.manifest.empty() ? ordered_json(nullptr) : ordered_json(s.manifest.string());
  return j;
}

void printSessionList(std::ostream& out, const std::vector<SessionSummary>& sessions,
                      const ViewOptions& options) {
  if (sessions.empty()) {
    out << "no sessions\n";
    return;
  }
  Table t({"ID", "AGENT", "WORKLOAD", "START", "DURATION", "REQUESTS", "TIER", "BYTES", "STATUS"});
  for (const auto& s : sessions) {
    std::string workload = s.workload_kind == "host" || s.workload_kind.empty()
                               ? (s.workload.empty() ? "host" : s.workload)
                               : s.workload_kind + ":" + s.workload;
    std::string tier =
        s.highest_tier < 0 ? "-" : std::to_string(s.highest_tier) + " " + tierLabel(s.highest_tier);
    t.add({safeText(s.id), safeText(s.agent), safeText(workload), shortStamp(s.started),
           humanDuration(s.duration_ms), std::to_string(s.requests), tier, humanBytes(s.bytes),
           s.status},
          s.highest_tier);
  }
  t.print(out, options.color);
}

std::vector<std::string> recordFlags(const json& r) {
  std::vector<std::string> f;
  if (flag(r, "watch")) f.push_back("watch");
  if (flag(r, "dry_run")) f.push_back("dry-run");
  if (flag(r, "upgraded")) f.push_back("upgraded");
  for (const auto& [side, label] : {std::pair{"request", "req"}, std::pair{"response", "resp"}}) {
    const std::string p = std::string(side) + "_body_";
    if (flag(r, p + "redacted")) {
      auto n = jsonNum<long long>(r, (p + "redactions").c_str());
      f.push_back(std::string(label) + ":redacted" + (n > 0 ? "(" + std::to_string(n) + ")" : ""));
    }
    if (flag(r, p + "truncated")) f.push_back(std::string(label) + ":truncated");
    if (auto it = r.find(p + "omitted"); it != r.end() && it->is_string())
      f.push_back(std::string(label) + ":omitted");
    if (jsonStr(r, (p + "encoding").c_str()) == "base64")
      f.push_back(std::string(label) + ":base64");
  }
  if (auto it = r.find("error"); it != r.end() && it->is_string()) f.push_back("error");
  return f;
}

void printSession(std::ostream& out, const SessionSummary& s, const std::vector<json>& records,
                  const ViewOptions& options) {
  const json& m = s.identity;
  const json ident = m.is_object() && m.contains("identity") ? m["identity"] : json::object();
  std::string status = s.status;
  if (!s.close_reason.empty()) status += ": " + s.close_reason;
  out << "session   " << safeText(s.id) << "  (" << status << ")\n";
  std::string agent = safeText(s.agent);
  if (auto sp = jsonStr(ident, "spiffe_id"); !sp.empty()) agent += "  " + safeText(sp);
  std::string how = jsonStr(ident, "auth_method");
  if (auto v = jsonStr(ident, "verification"); !v.empty()) how += (how.empty() ? "" : ", ") + v;
  if (!how.empty()) agent += "  (" + safeText(how) + ")";
  out << "agent     " << agent << "\n";
  out << "workload  " << safeText(s.workload_kind.empty() ? "-" : s.workload_kind)
      << (s.workload.empty() || s.workload == s.workload_kind ? "" : ": " + safeText(s.workload))
      << "\n";
  out << "process   " << processLine(m.is_object() ? m.value("process", json()) : json()) << "\n";
  if (auto ps = m.find("processes"); ps != m.end() && ps->is_array() && ps->size() > 1) {
    for (const auto& p : *ps) out << "          " << processLine(p) << "\n";
    if (auto more = jsonNum<long long>(m, "more_processes"); more > 0)
      out << "          and " << more << " more\n";
  }
  const std::string end = s.ended.empty() ? s.last_activity : s.ended;
  out << "time      " << shortStamp(s.started) << " .. " << shortStamp(end) << "  ("
      << humanDuration(s.duration_ms) << (s.ended.empty() ? ", still open" : "") << ")\n";
  out << "requests  " << records.size() << ", highest tier "
      << (s.highest_tier < 0 ? "-"
                             : std::to_string(s.highest_tier) + " " + tierLabel(s.highest_tier))
      << ", " << humanBytes(s.bytes) << "\n";
  if (auto lost = jsonNum<long long>(m, "lost_records"); lost > 0)
    out << "LOST      " << lost << " exchanges could not be written\n";
  out << "file      " << s.jsonl.string() << "\n\n";

  Table t({"SEQ", "TIME", "METHOD", "PATH", "STATUS", "TIER", "LATENCY", "REQ", "RESP", "FLAGS"});
  for (const auto& r : records) {
    int tier = jsonNum<int>(r, "tier", -1);
    auto flags = recordFlags(r);
    std::string fl;
    for (const auto& f : flags) fl += (fl.empty() ? "" : " ") + f;
    const auto status_code = jsonNum<long long>(r, "status");
    t.add({std::to_string(jsonNum<long long>(r, "seq")), clockTime(jsonStr(r, "timestamp")),
           safeText(jsonStr(r, "method")), pathWithQuery(r),
           status_code == 0 ? "-" : std::to_string(status_code),
           std::to_string(tier) + " " + tierLabel(tier),
           humanLatency(jsonNum<std::uint64_t>(r, "latency_us")),
           sizeOrDash(jsonNum<std::uint64_t>(r, "request_body_size")),
           sizeOrDash(jsonNum<std::uint64_t>(r, "response_body_size")), fl},
          tier);
  }
  t.print(out, options.color);
}

std::string bodyText(const json& r, const std::string& side, std::string* note) {
  const std::string p = side + "_body";
  const auto size = jsonNum<std::uint64_t>(r, (p + "_size").c_str());
  const std::string ctype = jsonStr(r, (side + "_content_type").c_str());
  const std::string enc = jsonStr(r, (p + "_encoding").c_str());
  std::string n = humanBytes(size) + " on the wire";
  if (!ctype.empty()) n = ctype + ", " + n;
  if (flag(r, p + "_redacted")) {
    auto k = jsonNum<long long>(r, (p + "_redactions").c_str());
    n += ", redacted" + (k > 0 ? " (" + std::to_string(k) + " values)" : std::string());
  }
  if (flag(r, p + "_truncated")) n += ", truncated";
  std::string text;
  auto body = r.find(p);
  if (auto om = r.find(p + "_omitted"); om != r.end() && om->is_string()) {
    n += ", not kept";
    text = "[omitted: " + om->get<std::string>() + "]";
  } else if (body == r.end() || !body->is_string()) {
    if (size == 0) n = "none";
    text = size == 0 ? "" : "(not recorded)";
  } else if (enc == "base64") {
    n += ", stored as base64";
    const std::string& b = body->get_ref<const std::string&>();
    for (std::size_t i = 0; i < b.size(); i += 76) text += b.substr(i, 76) + "\n";
    if (!text.empty()) text.pop_back();
  } else {
    text = prettyJsonOrRaw(body->get<std::string>());
  }
  if (note) *note = n;
  return safeText(text, true);
}

void printExchange(std::ostream& out, const json& r, const ViewOptions& options) {
  int tier = jsonNum<int>(r, "tier", -1);
  const char* c = options.color ? tierColor(tier) : "";
  const auto status_code = jsonNum<long long>(r, "status");
  out << (*c ? c : "") << "#" << jsonNum<long long>(r, "seq") << " "
      << safeText(jsonStr(r, "method")) << " " << pathWithQuery(r) << "  "
      << (status_code == 0 ? "-" : std::to_string(status_code)) << "  " << tier << " "
      << tierLabel(tier) << (*c ? kReset : "") << "\n";
  out << "time " << jsonStr(r, "timestamp") << ", latency "
      << humanLatency(jsonNum<std::uint64_t>(r, "latency_us"));
  auto flags = recordFlags(r);
  if (!flags.empty()) {
    out << ", flags:";
    for (const auto& f : flags) out << " " << f;
  }
  out << "\n";
  if (auto e = r.find("error"); e != r.end() && e->is_string())
    out << "error: " << safeText(e->get<std::string>()) << "\n";
  for (const char* side : {"request", "response"}) {
    std::string note;
    std::string text = bodyText(r, side, &note);
    out << "\n";
    if (options.color) out << "\x1b[1m";
    if (note == "none") {
      out << "-- " << side << " body: none";
      if (options.color) out << kReset;
      out << "\n";
      continue;
    }
    out << "-- " << side << " body (" << note << ")";
    if (options.color) out << kReset;
    out << "\n" << (options.color ? highlightMarkers(text) : text) << "\n";
  }
}

}  // namespace kscribe
