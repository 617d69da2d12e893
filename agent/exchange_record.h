#pragma once
// What the recorder hands the writer: one session's fixed identity, and one finished exchange.
// Plain data, moved from the relay's thread to the writer thread; JSON is built on the writer.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "agent/api_request.h"
#include "agent/body_capture.h"
#include "agent/session_key.h"
#include "agent/tier.h"
#include "proxy/attribution.h"

namespace kscribe {

/// A session's identity, fixed when it opens.
struct SessionInfo {
  std::string id;
  SessionKey key;
  std::string spiffe_id;
  std::string auth_method;
  std::chrono::system_clock::time_point started;
  std::string date;  // UTC YYYY-MM-DD of `started`; the directory the files live in
  std::shared_ptr<const proxy::Attribution> process;        // the process of the first request
  std::shared_ptr<const proxy::VerifiedIdentity> verified;  // the identity check's outcome, if any
  std::filesystem::path jsonl, manifest, open_marker;
};

/// One request/response exchange (or a refused request), ready to be written.
struct ExchangeRecord {
  std::shared_ptr<const SessionInfo> session;  // null: audited only (refused, sessions off)
  std::uint64_t seq = 0;                       // 1-based order of requests within the session
  std::uint64_t connection_id = 0;
  std::string agent, spiffe_id, auth_method;
  SessionKey key;
  std::shared_ptr<const proxy::Attribution> process;
  std::chrono::system_clock::time_point timestamp;  // when the request arrived
  std::string method;
  std::string path;  // target without the query
  ApiRequest api;
  Tier tier = Tier::kObserve;
  std::string decision = "allowed";  // allowed | denied
  unsigned status = 0;               // 0: no response head was seen
  std::uint64_t latency_us = 0;
  std::optional<BodyCapture::Result> request_body, response_body;
  bool upgraded = false;
  std::string error;    // the exchange failed midway
  std::string message;  // why it was denied
};

}  // namespace kscribe
