// The least CPU recording one exchange can cost under the formats DESIGN.md fixes, whatever the
// code around it. The format alone asks for three steps: escape the kept body into the line's
// JSON string, hash the line into the session's SHA-256 (the manifest's), append it to the session
// file (write(2) into the page cache; the kernel's later writeback is not counted). Vouching that
// a body holds no Secret adds a parse (simdjson's DOM, the fastest validating parser here). Each
// step is timed alone on this thread's CPU clock, best of three rounds.
// Usage: record_floor_bench BODY_FILE LINE_BYTES DIR [KEPT_BYTES]
// (LINE_BYTES: the size of a real session line for that body, as the recorder wrote it; DIR: a
// directory on the file system the sessions go to, the scratch file is removed; KEPT_BYTES: the
// body's bytes a line keeps, max_body_size, default all of it: only those are escaped, while the
// whole body is parsed.)
#include <fcntl.h>
#include <simdjson.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>

#include "agent/durable_file.h"
#include "agent/json_writer.h"
#include "agent/pki.h"

namespace {

long threadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1'000'000'000L + ts.tv_nsec;
}

// CPU µs per call of f, the least of three rounds, each over enough calls to fill `budget` bytes
// of work (at least 20): a floor, so the round least disturbed by the neighbours counts.
template <class F>
double perCall(std::size_t bytes_per_call, std::size_t budget, F&& f) {
  const std::size_t n =
      std::max<std::size_t>(20, budget / std::max<std::size_t>(1, bytes_per_call) / 3);
  for (std::size_t i = 0; i < std::min<std::size_t>(n, 5); ++i) f();  // warm up
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    const long t0 = threadCpuNs();
    for (std::size_t i = 0; i < n; ++i) f();
    const double us = static_cast<double>(threadCpuNs() - t0) / 1000.0 / static_cast<double>(n);
    if (round == 0 || us < best) best = us;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: record_floor_bench BODY_FILE LINE_BYTES DIR [KEPT_BYTES]\n");
    return 2;
  }
  std::string body;
  try {
    body = kscribe::pki::readFile(argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "record_floor_bench: %s\n", e.what());
    return 2;
  }
  const std::size_t line_bytes = std::strtoull(argv[2], nullptr, 10);
  const std::string_view kept = std::string_view(body).substr(
      0, argc == 5 ? std::strtoull(argv[4], nullptr, 10) : body.size());
  if (body.empty() || line_bytes == 0) {
    std::fprintf(stderr, "record_floor_bench: empty body or line size\n");
    return 2;
  }
  constexpr std::size_t kBudget = 256u << 20;  // bytes of work per step

  simdjson::dom::parser parser;
  const simdjson::padded_string padded(body);
  const double parse_us = perCall(body.size(), kBudget, [&] {
    simdjson::dom::element doc;
    if (parser.parse(padded).get(doc) != simdjson::SUCCESS) std::abort();
  });

  std::string escaped;
  escaped.reserve(body.size() * 2 + 2);
  const double escape_us = perCall(kept.size(), kBudget, [&] {
    escaped.clear();
    kscribe::appendJsonQuoted(escaped, kept);
  });

  const std::string line(line_bytes - 1, 'x');
  const std::string with_nl = line + '\n';
  kscribe::durable::Sha256 sha;
  const double sha_us = perCall(with_nl.size(), kBudget, [&] { sha.update(with_nl); });

  // A fresh file, as a session's is: appends allocate page-cache pages. 256 MB stays under the
  // dirty-page limits, past which writes wait for the disk. Lines go out in groups of up to
  // 256 KB, one write(2) each, as a writer that batches what queued up would.
  const std::filesystem::path scratch = std::filesystem::path(argv[3]) / ".record_floor_scratch";
  const int fd = ::open(scratch.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::perror("record_floor_bench: open");
    return 1;
  }
  const std::size_t per_group = std::max<std::size_t>(1, (256u << 10) / with_nl.size());
  std::string group;
  for (std::size_t i = 0; i < per_group; ++i) group += with_nl;
  const double write_us =
      perCall(group.size(), kBudget,
              [&] {
                if (::write(fd, group.data(), group.size()) != static_cast<ssize_t>(group.size())) {
                  std::abort();
                }
              }) /
      static_cast<double>(per_group);
  ::close(fd);
  std::filesystem::remove(scratch);

  const double format = escape_us + sha_us + write_us;
  std::printf(
      "body %zu bytes, line %zu bytes: escape %.2f us, sha256 %.2f us, append %.2f us, "
      "parse %.2f us; format floor %.2f us, with the parse %.2f us\n",
      body.size(), line_bytes, escape_us, sha_us, write_us, parse_us, format, format + parse_us);
  return 0;
}
