#pragma once
// Rendering recorded sessions for people: the text tables of `kscribe sessions list|show` and the
// self-contained HTML report. Recorded bodies and paths are untrusted input: text output escapes
// control characters (no terminal escape injection), HTML output escapes everything.

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/session_store.h"

namespace kscribe {

/// A string field of a recorded JSON object, or "" when absent or not a string.
inline std::string jsonStr(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return (it != j.end() && it->is_string()) ? it->get<std::string>() : std::string();
}

/// A numeric field of a recorded JSON object, or `fallback`.
template <class T>
T jsonNum(const nlohmann::json& j, const char* key, T fallback = 0) {
  auto it = j.find(key);
  return (it != j.end() && it->is_number()) ? it->get<T>() : fallback;
}

struct ViewOptions {
  bool color = false;  // ANSI colours by tier
};

/// `kscribe sessions list`: a header and one line per session.
void printSessionList(std::ostream& out, const std::vector<SessionSummary>& sessions,
                      const ViewOptions& options);
/// The list entry as JSON (`--json`).
nlohmann::ordered_json summaryJson(const SessionSummary& s);

/// `kscribe sessions show`: the session's identity, then one line per request.
void printSession(std::ostream& out, const SessionSummary& s,
                  const std::vector<nlohmann::json>& records, const ViewOptions& options);
/// `kscribe sessions show --body SEQ`: one exchange with its bodies pretty-printed.
void printExchange(std::ostream& out, const nlohmann::json& record, const ViewOptions& options);

/// The flags of a record: "watch", "req:redacted(2)", "resp:truncated", "resp:omitted", "error"...
std::vector<std::string> recordFlags(const nlohmann::json& record);

/// One side ("request" or "response") of a record as readable text: JSON pretty-printed (each
/// event of a watch stream separately), base64 noted, omitted and empty bodies as markers.
/// `note` receives a one-line description (content type, sizes, flags).
std::string bodyText(const nlohmann::json& record, const std::string& side, std::string* note);

/// Replaces control characters (and C1 controls) with visible escapes; keeps \n and \t when
/// `keep_newlines`.
std::string safeText(const std::string& s, bool keep_newlines = false);
/// `text` with each "[REDACTED]" and "[TRUNCATED at ...]" marker replaced by wrap(marker,
/// is_redaction): how the viewer and the report make them stand out.
std::string wrapMarkers(const std::string& text,
                        const std::function<std::string(std::string_view, bool)>& wrap);

/// Writes the HTML report of a session. `progress` may be empty.
void writeHtmlReport(std::ostream& out, const SessionSummary& s,
                     const std::vector<nlohmann::json>& records, const Progress& progress = {});

/// "&<>\"'" escaped for HTML text and attribute values.
std::string htmlEscape(const std::string& s);
/// JSON text that is safe inside <script type="application/json">: '<', '>', '&', U+2028 and
/// U+2029 are written as \u escapes, so no "</script>" can close the element early.
std::string scriptSafeJson(const nlohmann::json& j);

}  // namespace kscribe
