// libFuzzer target for the proxy's request path: the bytes a client sends, through the same
// Beast parser settings, limit checks, framing checks and header rewriting the relay uses.
// Input from the network must never assert, crash or leak. Run:
//   cmake -B build-fuzz -DKSCRIBE_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang
//   cmake --build build-fuzz --target request_fuzz
//   ./build-fuzz/tests/fuzz/request_fuzz tests/fuzz/corpus/request -max_total_time=60
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <limits>
#include <string>

#include "proxy/http_rules.h"
#include "proxy/status.h"

namespace http = boost::beast::http;
using namespace kscribe::proxy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  Limits limits;
  limits.max_header_size = 4096;
  limits.max_request_line = 1024;
  // The first byte picks how the input is split into reads (as TLS records would split it).
  const std::size_t step = 1 + data[0] % 64;
  std::string input(reinterpret_cast<const char*>(data + 1), size - 1);

  http::request_parser<http::buffer_body> req;
  req.header_limit(limits.max_header_size);
  req.body_limit(std::numeric_limits<std::uint64_t>::max());
  char body[256];
  std::string pending;
  std::size_t offset = 0;
  boost::beast::error_code ec;
  bool head_done = false;
  while (offset < input.size() || !pending.empty()) {
    if (offset < input.size()) {
      pending.append(input, offset, step);
      offset += step;
    }
    if (head_done) {
      req.get().body().data = body;
      req.get().body().size = sizeof body;
    }
    const std::size_t used = req.put(boost::asio::buffer(pending), ec);
    pending.erase(0, used);
    if (ec == http::error::need_more) {
      ec = {};
      if (offset >= input.size()) break;
      continue;
    }
    if (ec == http::error::need_buffer) ec = {};
    if (ec) break;
    if (!head_done && req.is_header_done()) {
      head_done = true;
      auto& msg = req.get();
      if (checkRequestHead(msg, msg.method_string(), msg.target(), limits)) return 0;
      (void)hasImpersonation(msg);
      (void)tapHeaders(msg);
      stripHopByHop(msg, req.upgrade());
    }
    if (req.is_done()) break;
    if (used == 0 && offset >= input.size()) break;
  }
  if (ec) {
    Verdict v = head_done ? classifyBodyError(ec)
                          : classifyHeadError(ec, !req.get().method_string().empty());
    if (v) (void)statusResponse(v.status, v.message, v.close);
  }
  return 0;
}
