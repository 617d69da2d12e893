#pragma once
// The audit log's line for one exchange. The writer thread writes one per request, so the sealed
// line is written straight as canonical text (audit_chain.h: sorted keys, no whitespace, ASCII
// only) instead of through a document tree; the tests hold the tree it must equal.

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "agent/exchange_record.h"

namespace kscribe {

/// Appends the sealed audit line for `rec` (no newline) to `out`: byte for byte what
/// sealAuditLine() makes of the same fields as a document. Returns the line's hash.
/// `scratch` is reused between calls to save allocations.
std::string appendAuditLine(std::string& out, const ExchangeRecord& rec, std::string_view timestamp,
                            std::string_view prev_hash, std::string& scratch);

/// The process behind an exchange (null when none), in the field order of the session files.
/// The command line is left out on purpose: it can carry credentials (--token=...).
nlohmann::ordered_json processObject(const proxy::Attribution* a);
/// processObject(a) as the session line carries it: dump() with UTF-8 kept, written directly.
void appendProcessJson(std::string& out, const proxy::Attribution* a);

}  // namespace kscribe
