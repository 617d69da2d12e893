// The HTML report of one session: a single self-contained file (inline CSS, SVG and script, a
// Content-Security-Policy that forbids every fetch) that opens offline in any browser. Recorded
// data is untrusted: every string goes through htmlEscape, and the embedded JSON through
// scriptSafeJson.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "agent/session_view.h"

namespace kscribe {

using nlohmann::json;

namespace {

constexpr const char* kTierColors[] = {"#4c9a5b", "#2f8fb0", "#c9a227", "#d9622b", "#b3122e"};

// The timeline's geometry, in SVG user units.
constexpr double kAxisLeft = 110, kAxisRight = 1180, kLaneHeight = 26, kTop = 10;

std::string sizeOrDash(std::uint64_t n) { return n == 0 ? "-" : humanBytes(n); }

const char* tierColor(int t) { return t >= 0 && t <= 4 ? kTierColors[t] : "#888"; }

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// Escaped text with the redaction and truncation markers made visible.
std::string markedHtml(const std::string& text) {
  return wrapMarkers(htmlEscape(text), [](std::string_view marker, bool redaction) {
    return std::string("<mark class=\"") + (redaction ? "red" : "cut") + "\">" +
           std::string(marker) + "</mark>";
  });
}

double msSince(const std::string& start, const std::string& ts) {
  auto a = parseRfc3339(start), b = parseRfc3339(ts);
  if (!a || !b) return 0;
  return std::chrono::duration<double, std::milli>(*b - *a).count();
}

// A tick step giving 4-10 ticks over `span_ms`.
double tickStep(double span_ms) {
  static constexpr double kSteps[] = {1,      2,      5,      10,      20,     50,    100,   200,
                                      500,    1000,   2000,   5000,    10000,  15000, 30000, 60000,
                                      120000, 300000, 600000, 900000,  1.8e6,  3.6e6, 7.2e6, 1.08e7,
                                      2.16e7, 4.32e7, 8.64e7, 1.728e8, 4.32e8, 8.64e8};
  for (double s : kSteps)
    if (span_ms / s <= 10) return s;
  return span_ms / 10;
}

std::string tickLabel(double ms) {
  char buf[32];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "+%.0fms", ms);
  } else if (ms < 60000) {
    std::snprintf(buf, sizeof buf, "+%gs", std::round(ms / 100) / 10);
  } else if (ms < 3.6e6) {
    std::snprintf(buf, sizeof buf, "+%dm%02ds", static_cast<int>(ms / 60000),
                  static_cast<int>(std::fmod(ms / 1000, 60)));
  } else {
    std::snprintf(buf, sizeof buf, "+%dh%02dm", static_cast<int>(ms / 3.6e6),
                  static_cast<int>(std::fmod(ms / 60000, 60)));
  }
  return buf;
}

void row(std::ostream& out, const char* label, const std::string& value_html) {
  out << "<tr><th>" << label << "</th><td>" << value_html << "</td></tr>\n";
}

std::string processHtml(const json& p) {
  if (!p.is_object()) return "<span class=\"dim\">not recorded</span>";
  const std::string status = jsonStr(p, "attribution");
  if (status != "attributed")
    return "<span class=\"dim\">" + htmlEscape(status.empty() ? "unknown" : status) + "</span>";
  std::string s = "<b>" + htmlEscape(jsonStr(p, "comm")) + "</b> pid " +
                  std::to_string(jsonNum<long long>(p, "tgid")) + " &middot; uid " +
                  std::to_string(jsonNum<long long>(p, "uid")) + " gid " +
                  std::to_string(jsonNum<long long>(p, "gid")) + " &middot; <code>" +
                  htmlEscape(jsonStr(p, "exe")) + "</code>";
  if (auto c = jsonStr(p, "cgroup_path"); !c.empty())
    s += " &middot; cgroup <code>" + htmlEscape(c) + "</code>";
  if (auto c = jsonStr(p, "container_id"); !c.empty())
    s += " &middot; container <code>" + htmlEscape(c.substr(0, 12)) + "</code>";
  if (auto u = jsonStr(p, "pod_uid"); !u.empty())
    s += " &middot; pod <code>" + htmlEscape(u) + "</code>";
  if (auto it = p.find("exited"); it != p.end() && it->is_boolean() && it->get<bool>())
    s += " <span class=\"dim\">(exited)</span>";
  return s;
}

constexpr const char* kStyle = R"CSS(
:root{--bg:#fbfbfa;--fg:#1d1f21;--dim:#6b7075;--line:#e3e4e6;--card:#fff;
--t0:#4c9a5b;--t1:#2f8fb0;--t2:#c9a227;--t3:#d9622b;--t4:#b3122e}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1280px;margin:0 auto;padding:20px 24px 60px}
h1{font-size:20px;margin:0 0 2px}
h2{font-size:15px;margin:26px 0 8px;text-transform:uppercase;letter-spacing:.04em;color:var(--dim)}
code,pre,.mono{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px}
.dim{color:var(--dim)}
.banner{font-size:12px;color:var(--dim)}
.id{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:15px;word-break:break-all}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;vertical-align:middle}
.st-open{background:#2f8fb0}.st-closed{background:#6b7075}.st-shipped{background:#4c9a5b}
.t0{background:var(--t0)}.t1{background:var(--t1)}.t2{background:var(--t2)}.t3{background:var(--t3)}.t4{background:var(--t4)}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px}
table.ident{border-collapse:collapse;width:100%}
table.ident th{text-align:left;font-weight:600;color:var(--dim);width:130px;padding:3px 8px 3px 0;vertical-align:top}
table.ident td{padding:3px 0;word-break:break-all}
.legend{display:flex;gap:8px;flex-wrap:wrap;margin:6px 0 10px}
.legend button{border:1px solid var(--line);background:var(--card);border-radius:14px;padding:3px 10px;cursor:pointer;font:inherit;font-size:12.5px}
.legend button.off{opacity:.35;text-decoration:line-through}
.legend .sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:-1px}
svg{width:100%;height:auto;display:block}
svg .lane{font-size:11px;fill:#6b7075}
svg .tick{font-size:10.5px;fill:#6b7075}
svg a rect:hover{stroke:#000;stroke-width:1.2}
table.req{border-collapse:collapse;width:100%;table-layout:fixed;background:var(--card);border:1px solid var(--line)}
table.req th{position:sticky;top:0;background:#f1f2f3;text-align:left;font-size:12px;padding:6px 8px;border-bottom:1px solid var(--line)}
table.req td{padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top;font-size:13px}
table.req tr.hidden{display:none}
table.req tr:target td{background:#fff6d6}
td.tier span{display:inline-block;white-space:nowrap;padding:0 6px;border-radius:4px;color:#fff;font-size:11.5px;font-weight:600}
td.path{overflow-wrap:anywhere}
td.path summary{cursor:pointer;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.flag{display:inline-block;border:1px solid var(--line);border-radius:4px;padding:0 4px;margin:1px 2px 1px 0;font-size:11px;color:#444}
.flag.redacted{border-color:#b3122e;color:#b3122e}.flag.truncated,.flag.omitted{border-color:#c9a227;color:#8a6d00}.flag.error{background:#b3122e;color:#fff}
.body{margin:8px 0 4px}
.body .note{font-size:12px;color:var(--dim);margin-bottom:3px}
.body pre{margin:0;padding:8px 10px;background:#f6f7f8;border:1px solid var(--line);border-radius:6px;white-space:pre-wrap;overflow-wrap:anywhere;max-height:32em;overflow:auto}
mark.red{background:#ffd9de;color:#8c0018;font-weight:600;border-radius:3px;padding:0 2px}
mark.cut{background:#fff1bf;color:#6b5300;border-radius:3px;padding:0 2px}
footer{margin-top:30px;font-size:12px;color:var(--dim)}
)CSS";

// Clicking a mark on the timeline opens its row; the legend hides and shows tiers. No fetches.
constexpr const char* kScript = R"JS(
(function(){
  function openRow(seq){var tr=document.getElementById('r-'+seq);if(!tr)return;
    var d=tr.querySelector('details');if(d)d.open=true;tr.scrollIntoView({block:'center'});
    history.replaceState(null,'','#r-'+seq);}
  var m=/^#r-(\d+)$/.exec(location.hash);if(m)openRow(m[1]);
  document.querySelectorAll('svg a[data-seq]').forEach(function(a){
    a.addEventListener('click',function(e){e.preventDefault();openRow(a.getAttribute('data-seq'));});});
  document.querySelectorAll('.legend button[data-tier]').forEach(function(b){
    b.addEventListener('click',function(){var t=b.getAttribute('data-tier');var off=b.classList.toggle('off');
      document.querySelectorAll('[data-tier="'+t+'"]').forEach(function(el){
        if(el===b)return;if(el.tagName==='TR')el.classList.toggle('hidden',off);
        else el.style.display=off?'none':'';});});});
})();
)JS";

}  // namespace

std::string htmlEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string scriptSafeJson(const json& j) {
  // ensure_ascii keeps U+2028/U+2029 (and every non-ASCII character) as \u escapes; invalid
  // UTF-8 in recorded strings is replaced rather than throwing.
  const std::string s = j.dump(-1, ' ', true, json::error_handler_t::replace);
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    // These can only occur inside JSON strings, where \u escapes mean the same characters.
    if (c == '<') {
      out += "\\u003c";
    } else if (c == '>') {
      out += "\\u003e";
    } else if (c == '&') {
      out += "\\u0026";
    } else {
      out += c;
    }
  }
  return out;
}

void writeHtmlReport(std::ostream& out, const SessionSummary& s, const std::vector<json>& records,
                     const Progress& progress) {
  const json& m = s.identity;
  const json ident = m.is_object() && m.contains("identity") ? m["identity"] : json::object();
  const std::string end_ts = s.ended.empty() ? s.last_activity : s.ended;

  // Time span of the axis: from the session's start to its end or the last response.
  double span = std::max(1.0, msSince(s.started, end_ts));
  for (const auto& r : records)
    span = std::max(span, msSince(s.started, jsonStr(r, "timestamp")) +
                              jsonNum<double>(r, "latency_us") / 1000.0);
  int counts[5] = {0, 0, 0, 0, 0};
  for (const auto& r : records) {
    int t = jsonNum<int>(r, "tier", -1);
    if (t >= 0 && t <= 4) ++counts[t];
  }

  out << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
         "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
      << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      << "<meta name=\"generator\" content=\"kscribe sessions report\">\n"
      << "<title>kscribe session " << htmlEscape(s.id) << "</title>\n<style>" << kStyle
      << "</style></head>\n<body><main>\n";

  // Identity and process.
  out << "<div class=\"banner\">kscribe &middot; recorded Kubernetes API session</div>\n"
      << "<h1>Session <span class=\"id\" id=\"session-id\">" << htmlEscape(s.id)
      << "</span> <span class=\"badge st-" << htmlEscape(s.status) << "\" id=\"session-status\">"
      << htmlEscape(s.status) << "</span></h1>\n<div class=\"card\"><table class=\"ident\">\n";
  std::string agent = "<b>" + htmlEscape(s.agent) + "</b>";
  if (auto sp = jsonStr(ident, "spiffe_id"); !sp.empty())
    agent += " &middot; <code>" + htmlEscape(sp) + "</code>";
  if (auto a = jsonStr(ident, "auth_method"); !a.empty()) agent += " &middot; " + htmlEscape(a);
  if (auto v = jsonStr(ident, "verification"); !v.empty())
    agent += " &middot; <span class=\"dim\">" + htmlEscape(v) + "</span>";
  row(out, "Agent", agent);
  row(out, "Workload",
      htmlEscape(s.workload_kind.empty() ? "-" : s.workload_kind) +
          (s.workload.empty() || s.workload == s.workload_kind
               ? ""
               : " &middot; <code>" + htmlEscape(s.workload) + "</code>"));
  std::string procs = processHtml(m.is_object() ? m.value("process", json()) : json());
  if (auto ps = m.find("processes"); ps != m.end() && ps->is_array() && ps->size() > 1) {
    for (const auto& p : *ps) procs += "<br>" + processHtml(p);
    if (auto more = jsonNum<long long>(m, "more_processes"); more > 0)
      procs += "<br><span class=\"dim\">and " + std::to_string(more) + " more</span>";
  }
  row(out, "Process", procs);
  row(out, "Time",
      htmlEscape(s.started) + " &rarr; " + htmlEscape(end_ts.empty() ? "-" : end_ts) + " (" +
          htmlEscape(humanDuration(s.duration_ms)) + (s.ended.empty() ? ", still open" : "") + ")" +
          (s.close_reason.empty() ? "" : " &middot; closed by " + htmlEscape(s.close_reason)));
  row(out, "Requests",
      std::to_string(records.size()) + " &middot; highest tier " +
          (s.highest_tier < 0
               ? std::string("-")
               : "<span class=\"badge t" + std::to_string(s.highest_tier) + "\">" +
                     std::to_string(s.highest_tier) + " " + tierLabel(s.highest_tier) + "</span>") +
          " &middot; " + htmlEscape(humanBytes(s.bytes)));
  if (auto lost = jsonNum<long long>(m, "lost_records"); lost > 0)
    row(out, "Lost", "<b>" + std::to_string(lost) + " exchanges could not be written</b>");
  if (auto sha = jsonStr(m, "sha256"); !sha.empty())
    row(out, "SHA-256", "<code>" + htmlEscape(sha) + "</code>");
  row(out, "File", "<code>" + htmlEscape(s.jsonl.string()) + "</code>");
  out << "</table></div>\n";

  // Legend (also the tier filter) and the timeline.
  out << "<h2>Timeline</h2>\n<div class=\"legend\">";
  for (int t = 0; t <= 4; ++t)
    out << "<button type=\"button\" data-tier=\"" << t << "\"><span class=\"sw t" << t
        << "\"></span>" << t << " " << tierLabel(t) << " &middot; " << counts[t] << "</button>";
  out << "</div>\n";
  const double height = kTop + 5 * kLaneHeight + 30;
  const double width = kAxisRight - kAxisLeft;
  out << "<div class=\"card\"><svg id=\"timeline\" viewBox=\"0 0 1200 " << fmt(height)
      << "\" role=\"img\" aria-label=\"requests over time by tier\">\n";
  for (int t = 0; t <= 4; ++t) {
    double y = kTop + (4 - t) * kLaneHeight;
    out << "<rect x=\"" << kAxisLeft << "\" y=\"" << fmt(y) << "\" width=\"" << width
        << "\" height=\"" << kLaneHeight << "\" fill=\"" << (t % 2 ? "#f7f7f6" : "#ffffff")
        << "\"/><text class=\"lane\" x=\"" << kAxisLeft - 8 << "\" y=\"" << fmt(y + 17)
        << "\" text-anchor=\"end\">" << tierLabel(t) << "</text>\n";
  }
  const double axis_y = kTop + 5 * kLaneHeight;
  const double step = tickStep(span);
  for (double v = 0; v <= span + 1e-9; v += step) {
    double x = kAxisLeft + v / span * width;
    out << "<line x1=\"" << fmt(x) << "\" x2=\"" << fmt(x) << "\" y1=\"" << kTop << "\" y2=\""
        << fmt(axis_y + 4) << "\" stroke=\"#e0e0e0\"/><text class=\"tick\" x=\"" << fmt(x)
        << "\" y=\"" << fmt(axis_y + 17) << "\" text-anchor=\"middle\">" << tickLabel(v)
        << "</text>\n";
  }
  for (const auto& r : records) {
    int t = jsonNum<int>(r, "tier", -1);
    if (t < 0 || t > 4) continue;
    const auto seq = jsonNum<long long>(r, "seq");
    double x = kAxisLeft + msSince(s.started, jsonStr(r, "timestamp")) / span * width;
    double w = std::max(3.0, jsonNum<double>(r, "latency_us") / 1000.0 / span * width);
    w = std::min(w, kAxisRight - x + 3);
    double y = kTop + (4 - t) * kLaneHeight + 5;
    out << "<a href=\"#r-" << seq << "\" data-seq=\"" << seq << "\" data-tier=\"" << t
        << "\"><rect x=\"" << fmt(x) << "\" y=\"" << fmt(y) << "\" width=\"" << fmt(w)
        << "\" height=\"" << kLaneHeight - 10 << "\" rx=\"2\" fill=\"" << tierColor(t)
        << "\" fill-opacity=\"0.85\"><title>#" << seq << " " << htmlEscape(jsonStr(r, "method"))
        << " " << htmlEscape(jsonStr(r, "path")) << " → " << jsonNum<long long>(r, "status") << " ("
        << tierLabel(t) << ")</title></rect></a>\n";
  }
  out << "</svg></div>\n";

  // The table; each path opens the exchange's bodies.
  out << "<h2>Requests</h2>\n<table class=\"req\" id=\"requests\"><colgroup>"
      << "<col style=\"width:44px\"><col style=\"width:100px\"><col style=\"width:72px\">"
      << "<col><col style=\"width:58px\"><col style=\"width:120px\"><col style=\"width:76px\">"
      << "<col style=\"width:74px\"><col style=\"width:82px\"><col style=\"width:180px\">"
      << "</colgroup>\n<thead><tr><th>#</th><th>Time</th><th>Method</th><th>Path</th>"
      << "<th>Status</th><th>Tier</th><th>Latency</th><th>Request</th><th>Response</th>"
      << "<th>Flags</th></tr></thead>\n<tbody>\n";
  std::size_t done = 0;
  for (const auto& r : records) {
    int t = jsonNum<int>(r, "tier", -1);
    const auto seq = jsonNum<long long>(r, "seq");
    const std::string ts = jsonStr(r, "timestamp");
    std::string path = jsonStr(r, "path");
    if (auto q = jsonStr(r, "query"); !q.empty()) path += "?" + q;
    const auto status_code = jsonNum<long long>(r, "status");
    out << "<tr id=\"r-" << seq << "\" data-tier=\"" << t << "\"><td class=\"num\">" << seq
        << "</td><td class=\"mono\" title=\"" << htmlEscape(ts) << "\">"
        << htmlEscape(ts.size() >= 23 ? ts.substr(11, 12) : ts) << "</td><td class=\"mono\">"
        << htmlEscape(jsonStr(r, "method")) << "</td><td class=\"path\"><details><summary>"
        << htmlEscape(path) << "</summary>";
    if (auto e = r.find("error"); e != r.end() && e->is_string())
      out << "<div class=\"body\"><div class=\"note\">error</div><pre>"
          << htmlEscape(e->get<std::string>()) << "</pre></div>";
    for (const char* side : {"request", "response"}) {
      std::string note;
      std::string text = bodyText(r, side, &note);
      out << "<div class=\"body " << side << "\"><div class=\"note\">" << side << " body &middot; "
          << htmlEscape(note) << "</div>";
      if (note != "none") out << "<pre>" << markedHtml(text) << "</pre>";
      out << "</div>";
    }
    out << "</details></td><td class=\"num\">" << (status_code ? std::to_string(status_code) : "-")
        << "</td><td class=\"tier\"><span class=\"t" << t << "\">" << t << " " << tierLabel(t)
        << "</span></td><td class=\"num\">" << humanLatency(jsonNum<std::uint64_t>(r, "latency_us"))
        << "</td><td class=\"num\">" << sizeOrDash(jsonNum<std::uint64_t>(r, "request_body_size"))
        << "</td><td class=\"num\">" << sizeOrDash(jsonNum<std::uint64_t>(r, "response_body_size"))
        << "</td><td>";
    for (const auto& f : recordFlags(r)) {
      std::string cls = "flag";
      for (const char* k : {"redacted", "truncated", "omitted", "error"})
        if (f.find(k) != std::string::npos) cls += std::string(" ") + k;
      out << "<span class=\"" << cls << "\">" << htmlEscape(f) << "</span>";
    }
    out << "</td></tr>\n";
    if (progress) progress(++done, records.size());
  }
  out << "</tbody></table>\n";

  // The same data for tools, without the bodies (they are in the table above).
  json data;
  data["session"] = summaryJson(s);
  data["manifest"] = m;
  data["requests"] = json::array();
  for (const auto& r : records) {
    json slim = r;
    slim.erase("request_body");
    slim.erase("response_body");
    data["requests"].push_back(std::move(slim));
  }
  out << "<script type=\"application/json\" id=\"kscribe-data\">" << scriptSafeJson(data)
      << "</script>\n<script>" << kScript << "</script>\n"
      << "<footer>Generated by <code>kscribe sessions report</code>. Secret values and "
         "credentials were redacted by kscribe before they were written; this file makes no "
         "network requests.</footer>\n</main></body></html>\n";
}

}  // namespace kscribe
