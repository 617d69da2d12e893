// Recorder throughput without sockets: what one exchange costs the relay's thread (begin, a
// request and a response body through BodyCapture, end), and how many exchanges per second the
// writer thread sustains to disk (JSONL + audit chain, fsync every sync_interval).
// Usage: recorder_bench [DIR] [EXCHANGES] [THREADS] [audit]
// With "audit", sessions are off (sessions.api.enabled=false): only the audit chain is written.
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

double threadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double processCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const auto sec = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

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
}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir =
      argc > 1 ? argv[1] : std::filesystem::temp_directory_path() / "kscribe-recorder-bench";
  const long n = argc > 2 ? std::atol(argv[2]) : 20000;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  const bool audit_only = argc > 4 && std::string(argv[4]) == "audit";
  std::filesystem::remove_all(dir);
  SystemClock clock;
  RecorderOptions o;
  o.storage = dir / "sessions";
  o.audit_path = dir / "audit" / "audit.jsonl";
  o.reject_on_failure = false;  // measure; drops would be counted below
  o.sessions_enabled = !audit_only;
  Recorder recorder(o, clock);
  recorder.start();

  const std::string body = podList(4096);
  proxy::ConnectionInfo c;
  c.agent = "bench";
  c.attribution = std::make_shared<proxy::Attribution>();
  proxy::RequestHead req;
  req.method = "GET";
  req.target = "/api/v1/namespaces/default/pods?limit=500";
  proxy::ResponseHead resp;
  resp.status = 200;
  resp.headers.emplace_back("Content-Type", "application/json");

  std::atomic<long> tap_ns{0};
  std::atomic<long> tap_cpu_ns{0};  // CPU time of the relay threads, to tell the writer's apart
  const double cpu0 = processCpuSeconds();
  auto t0 = Clock_::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      const double c0 = threadCpuSeconds();
      long local = 0;
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
      tap_cpu_ns += static_cast<long>((threadCpuSeconds() - c0) * 1e9);
    });
  }
  for (auto& t : ts) t.join();
  auto t1 = Clock_::now();
  recorder.flush();
  auto t2 = Clock_::now();
  recorder.shutdown();
  const double cpu = processCpuSeconds() - cpu0;
  const double tap_s = std::chrono::duration<double>(t1 - t0).count();
  const double all_s = std::chrono::duration<double>(t2 - t0).count();
  std::printf("recorder: %ld exchanges, %zu-byte JSON response, %d threads%s\n", n, body.size(),
              threads, audit_only ? ", sessions off (audit log only)" : "");
  std::printf("  tap cost on the relay thread: %.2f us/exchange (%.0f exchanges/s per thread)\n",
              static_cast<double>(tap_ns.load()) / 1000.0 / static_cast<double>(n),
              1e9 * static_cast<double>(n) / static_cast<double>(tap_ns.load()));
  std::printf(
      "  offered %.0f exchanges/s; written to disk at %.0f exchanges/s (%.1f MB/s); "
      "lost %llu\n",
      static_cast<double>(n) / tap_s, static_cast<double>(n) / all_s,
      static_cast<double>(n) * static_cast<double>(body.size()) / all_s / 1e6,
      static_cast<unsigned long long>(recorder.lostRecords()));
  // Everything but the relay threads is the writer thread (and the start/stop around it): its
  // cost per exchange, the number that does not depend on how busy the machine is.
  std::printf("  writer thread CPU: %.2f us/exchange (process CPU %.2f s, relay threads %.2f s)\n",
              (cpu - static_cast<double>(tap_cpu_ns.load()) / 1e9) * 1e6 / static_cast<double>(n),
              cpu, static_cast<double>(tap_cpu_ns.load()) / 1e9);
  std::filesystem::remove_all(dir);
  return 0;
}
