// `kscribe sessions list|show|report`: the viewer of recorded sessions.
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>

#include "agent/cli.h"
#include "agent/config.h"
#include "agent/session_store.h"
#include "agent/session_view.h"
#include "agent/units.h"

namespace kscribe::cli {

namespace fs = std::filesystem;

namespace {

struct Common {
  fs::path home, config;
  std::string color = "auto";  // auto | always | never
};

SessionDirs dirsFor(const Common& c) {
  Config cfg = effectiveConfig(c.home, c.config);
  return {cfg.sessions.api.storage, cfg.shipping.enabled, cfg.shipping.spool};
}

bool useColor(const Common& c, int fd) {
  if (c.color == "always") return true;
  if (c.color == "never") return false;
  const char* no_color = std::getenv("NO_COLOR");  // https://no-color.org
  if (no_color && *no_color) return false;
  const char* term = std::getenv("TERM");
  if (term && std::string(term) == "dumb") return false;
  return isatty(fd) == 1;
}

void addCommon(CLI::App* cmd, Common& c) {
  cmd->add_option("--home", c.home, "kscribe home (default $KSCRIBE_HOME, else ~/.kscribe)");
  cmd->add_option("--config", c.config, "Config file (default <home>/config.yaml)");
}

// Progress on stderr, only when it is a terminal and the work is large enough to wait for.
class TerminalProgress {
 public:
  TerminalProgress(std::string what, std::uint64_t total)
      : what_(std::move(what)), on_(isatty(STDERR_FILENO) == 1 && total >= kMinBytes) {}
  ~TerminalProgress() {
    if (shown_) std::fprintf(stderr, "\r\x1b[K");
  }
  Progress callback() {
    if (!on_) return {};
    return [this](std::uint64_t done, std::uint64_t total) {
      int pct = total ? static_cast<int>(done * 100 / total) : 100;
      if (pct == last_) return;
      last_ = pct;
      shown_ = true;
      std::fprintf(stderr, "\r%s %3d%%", what_.c_str(), pct);
      std::fflush(stderr);
    };
  }

 private:
  static constexpr std::uint64_t kMinBytes = 4'000'000;  // below this it is over in a blink
  std::string what_;
  bool on_;
  bool shown_ = false;
  int last_ = -1;
};

std::vector<nlohmann::json> loadRecords(const SessionSummary& s) {
  std::error_code ec;
  auto size = fs::file_size(s.jsonl, ec);
  TerminalProgress p("reading " + s.id, ec ? 0 : size);
  return readRecords(s.jsonl, p.callback());
}

}  // namespace

void addSessions(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("sessions", "List, show and report recorded sessions");
  cmd->require_subcommand(1);

  // list
  struct ListOpts {
    Common common;
    std::string agent, since, tier;
    bool json = false;
  };
  auto lo = std::make_shared<ListOpts>();
  auto* list = cmd->add_subcommand("list", "One line per session, newest first");
  addCommon(list, lo->common);
  list->add_option("--agent", lo->agent, "Only this agent's sessions");
  list->add_option("--since", lo->since,
                   "Only sessions active since a duration ago (1h, 30m) or an RFC 3339 time");
  list->add_option("--tier", lo->tier,
                   "Only sessions whose highest tier is at least this (0-4 or a name)");
  list->add_flag("--json", lo->json, "Print a JSON array");
  list->add_option("--color", lo->common.color, "auto, always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  list->callback([&run, lo] {
    run = [lo] {
      std::optional<std::chrono::system_clock::time_point> since;
      if (!lo->since.empty()) {
        if (auto d = parseDuration(lo->since)) {
          since = std::chrono::system_clock::now() - *d;
        } else if (auto t = parseRfc3339(lo->since)) {
          since = t;
        } else {
          std::cerr << "kscribe: --since: \"" << lo->since
                    << "\" is neither a duration (1h, 30m) nor an RFC 3339 time\n";
          return kExitUsage;
        }
      }
      std::optional<int> min_tier;
      if (!lo->tier.empty()) {
        min_tier = parseTier(lo->tier);
        if (!min_tier) {
          std::cerr << "kscribe: --tier: \"" << lo->tier
                    << "\" is not a tier (0-4, OBSERVE, OPERATE, MODIFY, SENSITIVE, "
                       "BREAK-GLASS)\n";
          return kExitUsage;
        }
      }
      const SessionDirs dirs = dirsFor(lo->common);
      std::vector<SessionSummary> shown;
      for (auto& s : listSessions(dirs)) {
        if (!lo->agent.empty() && s.agent != lo->agent) continue;
        if (min_tier && s.highest_tier < *min_tier) continue;
        if (since) {
          // A session counts if it was active at or after the time: its end (or last request).
          auto last = parseRfc3339(s.ended.empty() ? s.last_activity : s.ended);
          if (!last) last = parseRfc3339(s.started);
          if (!last || *last < *since) continue;
        }
        shown.push_back(std::move(s));
      }
      if (lo->json) {
        auto arr = nlohmann::ordered_json::array();
        for (const auto& s : shown) arr.push_back(summaryJson(s));
        std::cout << arr.dump(2) << "\n";
      } else {
        printSessionList(std::cout, shown, {useColor(lo->common, STDOUT_FILENO)});
      }
      return kExitOk;
    };
  });

  // show
  struct ShowOpts {
    Common common;
    std::string id;
    long long body = -1;
    bool json = false;
  };
  auto so = std::make_shared<ShowOpts>();
  auto* show = cmd->add_subcommand("show", "One line per request of a session");
  addCommon(show, so->common);
  show->add_option("id", so->id, "Session id (a unique prefix is enough)")->required();
  show->add_option("--body", so->body, "Print this exchange's (SEQ) bodies, pretty-printed")
      ->check(CLI::PositiveNumber);
  show->add_flag("--json", so->json, "Print JSON (the session and its records)");
  show->add_option("--color", so->common.color, "auto, always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  show->callback([&run, so] {
    run = [so] {
      const SessionDirs dirs = dirsFor(so->common);
      SessionSummary s;
      try {
        s = findSession(dirs, so->id);
      } catch (const SessionLookupError& e) {
        std::cerr << "kscribe: " << e.what() << "\n";
        return kExitFailure;
      }
      auto records = loadRecords(s);
      const ViewOptions view{useColor(so->common, STDOUT_FILENO)};
      if (so->body > 0) {
        for (const auto& r : records) {
          if (r.value("seq", 0LL) != so->body) continue;
          if (so->json) {
            std::cout << r.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
          } else {
            printExchange(std::cout, r, view);
          }
          return kExitOk;
        }
        std::cerr << "kscribe: session " << s.id << " has no exchange " << so->body << " (it has "
                  << records.size() << ")\n";
        return kExitFailure;
      }
      if (so->json) {
        nlohmann::ordered_json out;
        out["session"] = summaryJson(s);
        out["manifest"] = s.identity;
        out["requests"] = records;
        std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      } else {
        printSession(std::cout, s, records, view);
      }
      return kExitOk;
    };
  });

  // report
  struct ReportOpts {
    Common common;
    std::string id;
    fs::path html;
  };
  auto ro = std::make_shared<ReportOpts>();
  auto* report = cmd->add_subcommand(
      "report", "Write a self-contained HTML report of a session (opens offline in a browser)");
  addCommon(report, ro->common);
  report->add_option("id", ro->id, "Session id (a unique prefix is enough)")->required();
  report->add_option("--html", ro->html, "The HTML file to write")->required();
  report->callback([&run, ro] {
    run = [ro] {
      const SessionDirs dirs = dirsFor(ro->common);
      SessionSummary s;
      try {
        s = findSession(dirs, ro->id);
      } catch (const SessionLookupError& e) {
        std::cerr << "kscribe: " << e.what() << "\n";
        return kExitFailure;
      }
      auto records = loadRecords(s);
      // Written beside the target and renamed, so a reader never sees half a report.
      const fs::path tmp = ro->html.string() + ".tmp";
      {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) {
          std::cerr << "kscribe: cannot write " << tmp.string() << "\n";
          return kExitFailure;
        }
        std::error_code ec;
        TerminalProgress p("writing " + ro->html.filename().string(), fs::file_size(s.jsonl, ec));
        writeHtmlReport(out, s, records, p.callback());
        out.flush();
        if (!out) {
          std::cerr << "kscribe: writing " << tmp.string() << " failed\n";
          return kExitFailure;
        }
      }
      std::error_code ec;
      fs::rename(tmp, ro->html, ec);
      if (ec) {
        std::cerr << "kscribe: cannot rename " << tmp.string() << ": " << ec.message() << "\n";
        return kExitFailure;
      }
      std::cout << ro->html.string() << ": " << records.size() << " requests of session " << s.id
                << "\n";
      return kExitOk;
    };
  });
}

}  // namespace kscribe::cli
