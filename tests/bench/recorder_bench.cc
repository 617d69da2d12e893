// Recorder throughput without sockets: what one exchange costs the relay's thread (begin, a
// request and a response body through BodyCapture, end), and how many exchanges per second the
// writer thread sustains to disk (JSONL + audit chain, fsync every sync_interval).
// Usage: recorder_bench [DIR] [EXCHANGES] [THREADS] [BODY_BYTES] [cl] [audit]
// (BODY_BYTES: response size, default 4096; "cl": the response carries a Content-Length, as a
// server that knows the size sends; without it the body is chunked, size unknown; "audit":
// sessions off (sessions.api.enabled=false), so only the audit chain is written.)
#include <sys/resource.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "agent/recorder.h"

namespace {
using namespace kscribe;
using Clock_ = std::chrono::steady_clock;

std::string podList(std::size_t bytes) {
  std::string s =
      R"({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[)";
  int i = 0;
  while (s.size() < bytes) {
    if (i) s += ",";
    s += R"({"metadata":{"name":"web-)" + std::to_string(i++) +
         R"(","namespace":"default"},"spec":{"containers":[{"name":"app","image":"nginx:1.27"}]}})";
  }
  return s + "]}";
}

// CPU time of this thread: on a shared machine wall time also measures the neighbours.
long threadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1'000'000'000L + ts.tv_nsec;
}

// CPU time of the whole process (every thread).
long processCpuNs() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const auto ns = [](const timeval& t) { return t.tv_sec * 1'000'000'000L + t.tv_usec * 1000L; };
  return ns(ru.ru_utime) + ns(ru.ru_stime);
}
}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir =
      argc > 1 ? argv[1] : std::filesystem::temp_directory_path() / "kscribe-recorder-bench";
  const long n = argc > 2 ? std::atol(argv[2]) : 20000;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  const std::size_t body_bytes = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 4096;
  bool content_length = false, audit_only = false;
  for (int i = 5; i < argc; ++i) {
    content_length |= std::string(argv[i]) == "cl";
    audit_only |= std::string(argv[i]) == "audit";
  }
  std::filesystem::remove_all(dir);
  SystemClock clock;
  RecorderOptions o;
  o.storage = dir / "sessions";
  o.audit_path = dir / "audit" / "audit.jsonl";
  o.reject_on_failure = false;  // measure; drops would be counted below
  o.sessions_enabled = !audit_only;
  Recorder recorder(o, clock);
  recorder.start();

  const std::string body = podList(body_bytes);
  proxy::ConnectionInfo c;
  c.agent = "bench";
  c.attribution = std::make_shared<proxy::Attribution>();
  proxy::RequestHead req;
  req.method = "GET";
  req.target = "/api/v1/namespaces/default/pods?limit=500";
  proxy::ResponseHead resp;
  resp.status = 200;
  resp.headers.emplace_back("Content-Type", "application/json");
  if (content_length) resp.headers.emplace_back("Content-Length", std::to_string(body.size()));

  std::atomic<long> tap_ns{0}, cpu_ns{0};
  const long process_cpu0 = processCpuNs();
  auto t0 = Clock_::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      long local = 0;
      const long cpu0 = threadCpuNs();
      for (long i = 0; i < n / threads; ++i) {
        auto a = Clock_::now();
        auto b = recorder.begin(c, req);
        b.tap->requestEnd();
        b.tap->responseHead(resp);
        b.tap->responseBody(body);
        b.tap->end();
        local += std::chrono::duration_cast<std::chrono::nanoseconds>(Clock_::now() - a).count();
      }
      tap_ns += local;
      cpu_ns += threadCpuNs() - cpu0;
    });
  }
  for (auto& t : ts) t.join();
  auto t1 = Clock_::now();
  recorder.flush();
  auto t2 = Clock_::now();
  recorder.shutdown();
  const long process_cpu = processCpuNs() - process_cpu0;
  const double tap_s = std::chrono::duration<double>(t1 - t0).count();
  const double all_s = std::chrono::duration<double>(t2 - t0).count();
  std::printf("recorder: %ld exchanges, %zu-byte JSON response%s, %d threads%s\n", n, body.size(),
              content_length ? " with Content-Length" : " (chunked)", threads,
              audit_only ? ", sessions off (audit log only)" : "");
  std::printf("  tap cost on the relay thread: %.2f us/exchange (%.0f exchanges/s per thread)\n",
              static_cast<double>(tap_ns.load()) / 1000.0 / static_cast<double>(n),
              1e9 * static_cast<double>(n) / static_cast<double>(tap_ns.load()));
  std::printf("  relay thread CPU time: %.2f us/exchange\n",
              static_cast<double>(cpu_ns.load()) / 1000.0 / static_cast<double>(n));
  std::printf(
      "  offered %.0f exchanges/s; written to disk at %.0f exchanges/s (%.1f MB/s); "
      "lost %llu\n",
      static_cast<double>(n) / tap_s, static_cast<double>(n) / all_s,
      static_cast<double>(n) * static_cast<double>(body.size()) / all_s / 1e6,
      static_cast<unsigned long long>(recorder.lostRecords()));
  // The rest of the process's CPU is the writer thread's (and the start and stop around it): its
  // cost per exchange, which does not depend on how busy the machine is.
  std::printf("  writer thread CPU time: %.2f us/exchange\n",
              static_cast<double>(process_cpu - cpu_ns.load()) / 1000.0 / static_cast<double>(n));
  std::filesystem::remove_all(dir);
  return 0;
}
