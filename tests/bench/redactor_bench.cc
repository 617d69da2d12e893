// Redactor throughput: MB/s of BodyCapture over a generated SecretList and PodList (in memory),
// single thread, fed in 64 KiB chunks as the proxy's tap would.
//   redactor_bench [--mb N] [--rounds R]
#include <time.h>
#include <yajl/yajl_parse.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "agent/api_request.h"
#include "agent/body_capture.h"

namespace {

std::string secretItem(int i) {
  std::string s =
      R"({"metadata":{"name":"secret-)" + std::to_string(i) +
      R"(","namespace":"payments","uid":"6f1c2b3a-0000-4000-8000-)" +
      std::to_string(100000000000 + i) +
      R"(","resourceVersion":"12345","creationTimestamp":"2026-02-10T14:30:22Z","labels":{"app":"db"},"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"stringData\":{\"password\":\"FAKE-s3cr3t\"}}\n"}},"data":{"password":"RkFLRS1zM2NyM3QtVkFMVUUtMQ==","username":"YWRtaW4=","ca.crt":")";
  s.append(600, 'Q');
  s += R"("},"type":"Opaque"})";
  return s;
}

std::string podItem(int i) {
  return R"({"metadata":{"name":"web-)" + std::to_string(i) +
         R"(","namespace":"payments","uid":"6f1c2b3a-0000-4000-8000-000000000000","resourceVersion":"12345","creationTimestamp":"2026-02-10T14:30:22Z","labels":{"app":"web","pod-template-hash":"5d8f7c9b6"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d8f7c9b6","uid":"0a1b2c3d","controller":true,"blockOwnerDeletion":true}]},"spec":{"volumes":[{"name":"kube-api-access","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},{"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}}],"defaultMode":420}}],"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80,"protocol":"TCP"}],"env":[{"name":"MODE","value":"production"},{"name":"REPLICAS","value":"3"}],"resources":{"limits":{"cpu":"500m","memory":"256Mi"},"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","imagePullPolicy":"IfNotPresent"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"default","nodeName":"node-1","schedulerName":"default-scheduler"},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-02-10T14:30:22Z"}],"hostIP":"10.0.0.1","podIP":"10.244.0.7","startTime":"2026-02-10T14:30:22Z","containerStatuses":[{"name":"web","ready":true,"restartCount":0,"image":"nginx:1.27","imageID":"docker-pullable://nginx@sha256:0000","started":true}],"qosClass":"Burstable"}})";
}

std::string makeList(const char* kind, std::size_t bytes, std::string (*item)(int)) {
  std::string s = std::string(R"({"kind":")") + kind +
                  R"(","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[)";
  s.reserve(bytes + 4096);
  for (int i = 0; s.size() < bytes; ++i) {
    if (i) s += ',';
    s += item(i);
  }
  s += "]}";
  return s;
}

// CPU time of this thread: the machine may be shared, wall time would measure the neighbours.
double cpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The ceiling: yajl alone with callbacks that do nothing.
double yajlBaseline(const std::string& body, int rounds) {
  static const yajl_callbacks kNoop{};
  double best = 0;
  for (int r = 0; r < rounds; ++r) {
    yajl_handle h = yajl_alloc(&kNoop, nullptr, nullptr);
    const double start = cpuSeconds();
    constexpr std::size_t kChunk = 64 * 1024;
    for (std::size_t pos = 0; pos < body.size(); pos += kChunk) {
      yajl_parse(h, reinterpret_cast<const unsigned char*>(body.data()) + pos,
                 std::min(kChunk, body.size() - pos));
    }
    yajl_complete_parse(h);
    const double secs = cpuSeconds() - start;
    yajl_free(h);
    best = std::max(best, static_cast<double>(body.size()) / 1e6 / secs);
  }
  return best;
}

double run(const std::string& body, const char* target, int rounds, std::uint64_t* redactions,
           std::uint64_t cap = 1'000'000) {
  const kscribe::ApiRequest request = kscribe::parseApiRequest("GET", target);
  constexpr std::size_t kChunk = 64 * 1024;
  double best = 0;
  for (int r = 0; r < rounds; ++r) {
    kscribe::BodyOptions options;
    options.content_type = "application/json";
    options.request = &request;
    options.max_body_size = cap;
    const double start = cpuSeconds();
    kscribe::BodyCapture capture(options);
    for (std::size_t pos = 0; pos < body.size(); pos += kChunk) {
      capture.feed(std::span<const char>(body.data() + pos, std::min(kChunk, body.size() - pos)));
    }
    const auto result = capture.finish();
    const double secs = cpuSeconds() - start;
    if (!result.body || result.body->find("RkFLRS1zM2NyM3Qt") != std::string::npos) {
      std::fprintf(stderr, "redactor output wrong for %s\n", target);
      std::exit(1);
    }
    *redactions = result.redactions;
    best = std::max(best, static_cast<double>(body.size()) / 1e6 / secs);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t mb = 100;
  int rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--mb") == 0) mb = std::strtoul(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
  }
  const std::string secrets = makeList("SecretList", mb * 1'000'000, secretItem);
  const std::string pods = makeList("PodList", mb * 1'000'000, podItem);
  std::printf("single thread, MB/s of CPU time (best of %d), 64 KiB chunks, max_body_size 1MB\n",
              rounds);
  std::printf("yajl alone, no-op callbacks:       %.0f MB/s SecretList, %.0f MB/s PodList\n",
              yajlBaseline(secrets, rounds), yajlBaseline(pods, rounds));
  std::uint64_t red = 0;
  const double s1 = run(secrets, "/api/v1/namespaces/payments/secrets", rounds, &red);
  std::printf("SecretList %zu MB (secrets path): %.0f MB/s  (redactions within 1MB cap: %llu)\n",
              secrets.size() / 1'000'000, s1, static_cast<unsigned long long>(red));
  const double s2 = run(secrets, "/api/v1/namespaces/payments/configmaps", rounds, &red);
  std::printf("SecretList %zu MB (kind-driven):   %.0f MB/s\n", secrets.size() / 1'000'000, s2);
  const double p = run(pods, "/api/v1/namespaces/payments/pods", rounds, &red);
  std::printf("PodList    %zu MB:                 %.0f MB/s\n", pods.size() / 1'000'000, p);
  // Everything kept (no cut): the cost of writing the redacted output as well.
  const std::uint64_t all = 1'000'000'000;
  std::printf("SecretList, nothing cut:           %.0f MB/s\n",
              run(secrets, "/api/v1/namespaces/payments/secrets", rounds, &red, all));
  std::printf("PodList, nothing cut:              %.0f MB/s\n",
              run(pods, "/api/v1/namespaces/payments/pods", rounds, &red, all));
  return 0;
}
