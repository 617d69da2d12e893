#include "agent/audit_chain.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <string_view>

#include "agent/durable_file.h"

namespace kscribe {

std::string canonicalJson(const nlohmann::json& value) {
  // nlohmann::json keeps object keys in a std::map: dump() emits them sorted.
  return value.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

std::string sealAuditLine(nlohmann::json& line, const std::string& prev_hash) {
  line["prev_hash"] = prev_hash;
  line["hash"] = "";
  std::string text = canonicalJson(line);
  const std::string hash = durable::sha256Hex(text);
  line["hash"] = hash;
  // The sealed line is the hashed text with the hash filled in: a hex digest needs no escaping,
  // so splicing it into the one empty "hash" value gives exactly what dumping again would.
  static constexpr std::string_view kEmpty = "\"hash\":\"\"";
  const auto at = text.find(kEmpty);
  if (at == std::string::npos || text.find(kEmpty, at + 1) != std::string::npos)
    return canonicalJson(line);  // not one unambiguous place: dump again
  text.insert(at + kEmpty.size() - 1, hash);
  return text;
}

AuditVerifyResult verifyAuditChain(std::istream& in, const AuditVerifyOptions& options) {
  AuditVerifyResult result;
  std::string expected_prev = kAuditGenesis;
  bool head_seen = !options.expected_head || *options.expected_head == kAuditGenesis;
  std::string text;
  std::uint64_t bytes = 0;
  std::uint64_t next_progress = 0;
  auto fail = [&](std::string problem) {
    result.ok = false;
    result.bad_line = result.lines;
    result.problem = std::move(problem);
    return result;
  };
  while (std::getline(in, text)) {
    ++result.lines;
    bytes += text.size() + 1;
    if (options.progress && bytes >= next_progress) {
      options.progress(bytes);
      next_progress = bytes + (8u << 20);
    }
    if (in.eof()) return fail("torn line: no newline at the end of the file");
    nlohmann::json line = nlohmann::json::parse(text, nullptr, false);
    if (line.is_discarded() || !line.is_object()) return fail("not a JSON object");
    auto prev = line.find("prev_hash");
    auto hash = line.find("hash");
    if (prev == line.end() || !prev->is_string() || hash == line.end() || !hash->is_string()) {
      return fail("no prev_hash/hash");
    }
    const std::string claimed = hash->get<std::string>();
    const std::string prev_hash = prev->get<std::string>();
    if (canonicalJson(line) != text) {
      return fail("not in canonical form (the line was reformatted or edited)");
    }
    *hash = "";
    if (durable::sha256Hex(canonicalJson(line)) != claimed) {
      return fail("content does not match its hash (the line was edited)");
    }
    if (prev_hash != expected_prev) {
      return fail(result.lines == 1
                      ? "prev_hash is not \"genesis\" (lines before it were deleted)"
                      : "prev_hash does not match line " + std::to_string(result.lines - 1) +
                            " (a line was deleted, inserted or reordered here)");
    }
    expected_prev = claimed;
    result.head = claimed;
    if (options.expected_head && claimed == *options.expected_head) head_seen = true;
  }
  if (options.progress) options.progress(bytes);
  if (!head_seen) {
    result.ok = false;
    result.bad_line = result.lines + 1;
    result.problem = "expected head " + *options.expected_head +
                     " is not in the chain (the log was truncated after line " +
                     std::to_string(result.lines) + ")";
  }
  return result;
}

AuditVerifyResult verifyAuditFile(const std::filesystem::path& path,
                                  const AuditVerifyOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    AuditVerifyResult r;
    r.ok = false;
    r.problem = "cannot open " + path.string();
    return r;
  }
  return verifyAuditChain(in, options);
}

}  // namespace kscribe
