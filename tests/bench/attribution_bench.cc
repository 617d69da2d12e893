// Connection setup rate with attribution on vs off, in one run, and the BPF run time per
// connection (bpf_enable_stats(BPF_STATS_RUN_TIME)). Driven by tests/bench/attribution_bench.sh.
//
// A server thread accepts on a loopback port (port 0) and, with attribution on, asks
// BpfAttribution about each accepted socket exactly as the proxy does (sk-storage lookup plus the
// /proc and cgroup enrichment), then completes the TLS handshake (--tls) or closes. One client
// connects sequentially. Rounds alternate off/on so machine noise hits both alike; the rate of
// each mode is the median over its rounds.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/attribution.h"
#include "agent/bpf_loader.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  int connections = 2000;  // per round
  int rounds = 6;          // per mode
  std::string cert, key;   // TLS when both are set
  bool stats = true;       // --no-stats: rates without bpf_enable_stats' own timing cost
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "attribution_bench: %s\n", what.c_str());
  std::exit(1);
}

int listenLoopback(std::uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 1024) != 0)
    die("listen: " + std::string(std::strerror(errno)));
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// One round: `n` sequential connections; returns connections per second.
double round(int lfd, std::uint16_t port, int n, SSL_CTX* server_ctx, SSL_CTX* client_ctx,
             kscribe::proxy::AttributionSource* source, std::uint64_t* attributed,
             std::uint64_t* lookup_ns) {
  std::atomic<std::uint64_t> hits{0};
  std::atomic<std::uint64_t> spent{0};
  std::thread server([&] {
    for (int i = 0; i < n; ++i) {
      int afd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      if (afd < 0) die("accept");
      if (source != nullptr) {
        auto t = Clock::now();
        auto a = source->lookup(afd);
        spent += static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count());
        if (a->status == kscribe::proxy::Attribution::Status::kAttributed) ++hits;
      }
      if (server_ctx != nullptr) {
        SSL* ssl = SSL_new(server_ctx);
        SSL_set_fd(ssl, afd);
        if (SSL_accept(ssl) != 1) die("SSL_accept");
        SSL_shutdown(ssl);
        SSL_free(ssl);
      }
      ::close(afd);
    }
  });
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      die("connect: " + std::string(std::strerror(errno)));
    if (client_ctx != nullptr) {
      SSL* ssl = SSL_new(client_ctx);
      SSL_set_fd(ssl, fd);
      if (SSL_connect(ssl) != 1) die("SSL_connect");
      SSL_shutdown(ssl);
      SSL_free(ssl);
    } else {
      // Wait for the server's close so a round measures whole accepts, not queued SYNs.
      char c;
      (void)!::read(fd, &c, 1);
    }
    // RST on close: no TIME_WAIT pile-up over thousands of loopback connections.
    linger lg{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    ::close(fd);
  }
  server.join();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  *attributed += hits;
  *lookup_ns += spent;
  return n / secs;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) die("missing value for " + k);
      return std::string(argv[++i]);
    };
    if (k == "--connections")
      args.connections = std::stoi(next());
    else if (k == "--rounds")
      args.rounds = std::stoi(next());
    else if (k == "--cert")
      args.cert = next();
    else if (k == "--no-stats")
      args.stats = false;
    else if (k == "--key")
      args.key = next();
    else
      die("unknown argument " + k);
  }
  const bool tls = !args.cert.empty() && !args.key.empty();

  SSL_CTX* sctx = nullptr;
  SSL_CTX* cctx = nullptr;
  if (tls) {
    sctx = SSL_CTX_new(TLS_server_method());
    cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION);
    SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_OFF);  // a full handshake every time
    SSL_CTX_set_num_tickets(sctx, 0);
    if (SSL_CTX_use_certificate_chain_file(sctx, args.cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(sctx, args.key.c_str(), SSL_FILETYPE_PEM) != 1)
      die("loading the TLS certificate or key");
  }

  std::uint16_t port = 0;
  int lfd = listenLoopback(&port);

  int stats_fd = args.stats ? bpf_enable_stats(BPF_STATS_RUN_TIME) : 0;
  if (stats_fd < 0) die("bpf_enable_stats: " + std::string(std::strerror(errno)));

  // off: no program attached (attribution: off). unrelated: attached, this port not registered
  // (what every other connection on the host pays). on: attached, registered, and each accepted
  // socket looked up and enriched as the proxy does.
  std::vector<double> off, unrelated, on;
  std::uint64_t on_connections = 0, attributed = 0, ignored = 0;
  std::uint64_t run_ns = 0, run_cnt = 0, lookup_ns = 0;
  round(lfd, port, std::min(200, args.connections), sctx, cctx, nullptr, &ignored,
        &ignored);  // warm-up
  auto offRound = [&] {
    off.push_back(round(lfd, port, args.connections, sctx, cctx, nullptr, &ignored, &ignored));
  };
  for (int r = 0; r < args.rounds; ++r) {
    // Even rounds run off -> unrelated -> on, odd rounds the reverse, so a drift in machine load
    // during the run does not favour one mode.
    if (r % 2 == 0) offRound();
    {
      kscribe::BpfLoader loader;  // load and attach outside the timed rounds
      kscribe::BpfAttribution source(loader, "/proc", loader.cgroup());
      auto onRound = [&] {
        loader.addPort(port);
        auto before = loader.runStats();
        on.push_back(
            round(lfd, port, args.connections, sctx, cctx, &source, &attributed, &lookup_ns));
        auto after = loader.runStats();
        run_ns += after.run_time_ns - before.run_time_ns;
        run_cnt += after.run_cnt - before.run_cnt;
        on_connections += static_cast<std::uint64_t>(args.connections);
        loader.removePort(port);
      };
      if (r % 2 == 1) onRound();
      unrelated.push_back(
          round(lfd, port, args.connections, sctx, cctx, nullptr, &ignored, &ignored));
      if (r % 2 == 0) onRound();
    }
    if (r % 2 == 1) offRound();
  }
  double off_rate = median(off), unrelated_rate = median(unrelated), on_rate = median(on);
  std::printf("mode=%s connections_per_round=%d rounds=%d\n", tls ? "tls" : "tcp", args.connections,
              args.rounds);
  std::printf("off_rate=%.0f conn/s (no program)\n", off_rate);
  std::printf("unrelated_rate=%.0f conn/s (program attached, port not registered)\n",
              unrelated_rate);
  std::printf("on_rate=%.0f conn/s (attributed and enriched)\n", on_rate);
  std::printf("on_over_off=%.4f slowdown_pct=%.2f\n", on_rate / off_rate,
              100.0 * (1.0 - on_rate / off_rate));
  std::printf("unrelated_over_off=%.4f\n", unrelated_rate / off_rate);
  std::printf("attributed=%llu/%llu\n", static_cast<unsigned long long>(attributed),
              static_cast<unsigned long long>(on_connections));
  std::printf("bpf_ns_per_connection=%.0f bpf_runs_per_connection=%.1f bpf_ns_per_run=%.0f\n",
              static_cast<double>(run_ns) / static_cast<double>(on_connections),
              static_cast<double>(run_cnt) / static_cast<double>(on_connections),
              run_cnt ? static_cast<double>(run_ns) / static_cast<double>(run_cnt) : 0.0);
  std::printf("lookup_us_per_connection=%.1f (sk-storage lookup + /proc and cgroup enrichment)\n",
              static_cast<double>(lookup_ns) / 1000.0 / static_cast<double>(on_connections));
  if (stats_fd > 0) ::close(stats_fd);
  ::close(lfd);
  if (attributed != on_connections) {
    std::fprintf(stderr, "attribution_bench: %llu connections were not attributed\n",
                 static_cast<unsigned long long>(on_connections - attributed));
    return 1;
  }
  return 0;
}
