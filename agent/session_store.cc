#include "agent/session_store.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <set>

namespace kscribe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::string_view kJsonlSuffix = ".jsonl";
constexpr std::string_view kManifestSuffix = ".manifest.json";
constexpr std::string_view kOpenSuffix = ".open.json";

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::optional<json> readJsonFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  try {
    return json::parse(in);
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return (it != j.end() && it->is_string()) ? it->get<std::string>() : std::string();
}

std::int64_t msBetween(const std::string& a, const std::string& b) {
  auto ta = parseRfc3339(a), tb = parseRfc3339(b);
  if (!ta || !tb) return 0;
  return std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(*tb - *ta).count());
}

void fillIdentity(SessionSummary& s, const json& m) {
  s.identity = m;
  s.agent = str(m, "agent");
  if (auto it = m.find("identity"); it != m.end() && it->is_object()) {
    s.workload_kind = str(*it, "workload_kind");
    s.workload = str(*it, "workload");
    if (s.agent.empty()) s.agent = str(*it, "agent");
  }
  s.started = str(m, "started");
}

// An open session has no manifest yet: count what the JSONL holds so far.
void scanOpen(SessionSummary& s) {
  std::error_code ec;
  s.bytes = fs::file_size(s.jsonl, ec);
  if (ec) s.bytes = 0;
  std::ifstream in(s.jsonl, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json r = json::parse(line, nullptr, false);
    if (r.is_discarded() || !r.is_object()) continue;  // a torn last line
    ++s.requests;
    if (auto t = r.find("tier"); t != r.end() && t->is_number_integer())
      s.highest_tier = std::max(s.highest_tier, t->get<int>());
    if (auto ts = str(r, "timestamp"); !ts.empty()) s.last_activity = ts;
    if (s.agent.empty()) s.agent = str(r, "agent");
  }
  if (s.started.empty()) s.started = s.last_activity;
  s.duration_ms = msBetween(s.started, s.last_activity);
}

// Session ids waiting in the shipper's spool: entries are named <seq>-<session id>.
std::set<std::string> spooledIds(const fs::path& spool) {
  std::set<std::string> ids;
  std::error_code ec;
  for (const char* sub : {"pending", "incoming"}) {
    for (const auto& e : fs::directory_iterator(spool / sub, ec)) {
      const std::string name = e.path().filename().string();
      if (auto dash = name.find('-'); dash != std::string::npos) ids.insert(name.substr(dash + 1));
    }
  }
  return ids;
}

std::optional<SessionSummary> load(const fs::path& dir, const std::string& id, bool shipping,
                                   const std::set<std::string>& spooled) {
  SessionSummary s;
  s.id = id;
  s.jsonl = dir / (id + std::string(kJsonlSuffix));
  s.manifest = dir / (id + std::string(kManifestSuffix));
  std::error_code ec;
  if (auto m = fs::exists(s.manifest, ec) ? readJsonFile(s.manifest) : std::nullopt) {
    fillIdentity(s, *m);
    s.ended = str(*m, "ended");
    s.last_activity = s.ended;
    s.close_reason = str(*m, "close_reason");
    s.requests = m->value("request_count", std::uint64_t{0});
    if (auto h = m->find("highest_tier"); h != m->end() && h->is_number_integer())
      s.highest_tier = h->get<int>();
    s.bytes = m->value("bytes", std::uint64_t{0});
    s.duration_ms = msBetween(s.started, s.ended);
    s.status = shipping && !spooled.contains(id) ? "shipped" : "closed";
    return s;
  }
  s.manifest.clear();
  if (!fs::exists(s.jsonl, ec)) return std::nullopt;
  if (auto m = readJsonFile(dir / (id + std::string(kOpenSuffix)))) fillIdentity(s, *m);
  s.status = "open";
  scanOpen(s);
  return s;
}

int daysFromCivil(int y, unsigned m, unsigned d) {
  // Howard Hinnant's days_from_civil: no timegm/TZ dependence.
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int>(doe) - 719468;
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> parseRfc3339(std::string_view t) {
  auto digits = [&](std::size_t pos, std::size_t n) -> std::optional<int> {
    if (pos + n > t.size()) return std::nullopt;
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(t[i]))) return std::nullopt;
      v = v * 10 + (t[i] - '0');
    }
    return v;
  };
  auto Y = digits(0, 4), M = digits(5, 2), D = digits(8, 2), h = digits(11, 2), m = digits(14, 2),
       s = digits(17, 2);
  if (!Y || !M || !D || !h || !m || !s || t[4] != '-' || t[7] != '-' ||
      (t[10] != 'T' && t[10] != 't' && t[10] != ' ') || t[13] != ':' || t[16] != ':')
    return std::nullopt;
  if (*M < 1 || *M > 12 || *D < 1 || *D > 31 || *h > 23 || *m > 59 || *s > 60) return std::nullopt;
  std::size_t pos = 19;
  std::int64_t micros = 0;
  if (pos < t.size() && t[pos] == '.') {
    ++pos;
    int n = 0;
    while (pos < t.size() && std::isdigit(static_cast<unsigned char>(t[pos]))) {
      if (n < 6) micros = micros * 10 + (t[pos] - '0');
      ++n;
      ++pos;
    }
    if (n == 0) return std::nullopt;
    for (int i = n; i < 6; ++i) micros *= 10;
  }
  std::int64_t offset_s = 0;
  if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'z')) {
    ++pos;
  } else if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
    auto oh = digits(pos + 1, 2), om = digits(pos + 4, 2);
    if (!oh || !om || pos + 3 >= t.size() || t[pos + 3] != ':') return std::nullopt;
    offset_s = (*oh * 3600 + *om * 60) * (t[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != t.size()) return std::nullopt;
  std::int64_t days = daysFromCivil(*Y, static_cast<unsigned>(*M), static_cast<unsigned>(*D));
  std::int64_t secs = days * 86400 + *h * 3600 + *m * 60 + *s - offset_s;
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::microseconds(secs * 1'000'000 + micros)));
}

std::vector<SessionSummary> listSessions(const SessionDirs& where) {
  std::vector<SessionSummary> out;
  std::error_code ec;
  if (!fs::is_directory(where.storage, ec)) return out;
  const auto spooled = where.shipping ? spooledIds(where.spool) : std::set<std::string>();
  std::vector<fs::path> dirs{where.storage};
  for (const auto& e : fs::directory_iterator(where.storage, ec))
    if (e.is_directory(ec)) dirs.push_back(e.path());
  for (const auto& dir : dirs) {
    std::set<std::string> ids;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      for (auto suffix : {kJsonlSuffix, kManifestSuffix}) {
        if (endsWith(name, suffix)) ids.insert(name.substr(0, name.size() - suffix.size()));
      }
    }
    for (const auto& id : ids)
      if (auto s = load(dir, id, where.shipping, spooled)) out.push_back(std::move(*s));
  }
  std::sort(out.begin(), out.end(), [](const SessionSummary& a, const SessionSummary& b) {
    return a.started != b.started ? a.started > b.started : a.id > b.id;
  });
  return out;
}

SessionSummary findSession(const SessionDirs& dirs, std::string_view id_or_prefix) {
  if (id_or_prefix.empty()) throw SessionLookupError("empty session id");
  std::vector<SessionSummary> matches;
  for (auto& s : listSessions(dirs)) {
    if (s.id == id_or_prefix) return s;
    if (s.id.starts_with(id_or_prefix)) matches.push_back(std::move(s));
  }
  if (matches.empty())
    throw SessionLookupError("no session " + std::string(id_or_prefix) + " in " +
                             dirs.storage.string());
  if (matches.size() > 1) {
    std::string msg = "session id " + std::string(id_or_prefix) + " is ambiguous:";
    for (const auto& s : matches) msg += " " + s.id;
    throw SessionLookupError(msg);
  }
  return std::move(matches.front());
}

std::vector<json> readRecords(const fs::path& jsonl, const Progress& progress) {
  std::ifstream in(jsonl, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + jsonl.string());
  std::error_code ec;
  const std::uint64_t total = fs::file_size(jsonl, ec);
  std::vector<json> records;
  std::string line;
  std::uint64_t done = 0, next_report = 0;
  std::size_t lineno = 0;
  std::string bad;
  while (std::getline(in, line)) {
    ++lineno;
    const bool complete = !in.eof();
    done += line.size() + 1;
    if (line.empty()) continue;
    json r = json::parse(line, nullptr, false);
    if (r.is_discarded() || !r.is_object()) {
      // Only the last line may be torn: the writer appends whole lines.
      if (!bad.empty()) throw std::runtime_error(bad);
      bad = jsonl.string() + ":" + std::to_string(lineno) + ": not a JSON record";
      if (!complete) break;
      continue;
    }
    if (!bad.empty()) throw std::runtime_error(bad);
    records.push_back(std::move(r));
    if (progress && done >= next_report) {
      progress(done, total);
      next_report = done + total / 100 + 1;
    }
  }
  if (progress) progress(total, total);
  return records;
}

const char* tierLabel(int tier) {
  static constexpr const char* kNames[] = {"OBSERVE", "OPERATE", "MODIFY", "SENSITIVE",
                                           "BREAK-GLASS"};
  return tier >= 0 && tier <= 4 ? kNames[tier] : "-";
}

std::optional<int> parseTier(std::string_view text) {
  if (text.size() == 1 && text[0] >= '0' && text[0] <= '4') return text[0] - '0';
  std::string up(text);
  for (auto& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (up == "BREAK_GLASS" || up == "BREAKGLASS") up = "BREAK-GLASS";
  for (int t = 0; t <= 4; ++t)
    if (up == tierLabel(t)) return t;
  return std::nullopt;
}

std::string humanBytes(std::uint64_t b) {
  char buf[32];
  if (b < 1000) {
    std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(b));
  } else if (b < 1'000'000) {
    std::snprintf(buf, sizeof buf, "%.1fKB", static_cast<double>(b) / 1e3);
  } else if (b < 1'000'000'000) {
    std::snprintf(buf, sizeof buf, "%.1fMB", static_cast<double>(b) / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.1fGB", static_cast<double>(b) / 1e9);
  }
  return buf;
}

std::string humanDuration(std::int64_t ms) {
  char buf[32];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
  } else if (ms < 60'000) {
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1e3);
  } else if (ms < 3'600'000) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(ms / 60'000),
                  static_cast<long long>(ms / 1000 % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(ms / 3'600'000),
                  static_cast<long long>(ms / 60'000 % 60));
  }
  return buf;
}

std::string humanLatency(std::uint64_t us) {
  char buf[32];
  if (us < 1000) {
    std::snprintf(buf, sizeof buf, "%lluus", static_cast<unsigned long long>(us));
  } else if (us < 1'000'000) {
    std::snprintf(buf, sizeof buf, "%.1fms", static_cast<double>(us) / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2fs", static_cast<double>(us) / 1e6);
  }
  return buf;
}

}  // namespace kscribe
