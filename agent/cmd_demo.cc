// `kscribe demo`: the whole path on this machine in one command. A temporary kscribe home, the
// bundled DEMO Kubernetes API server (tests/apiserver/server.py: in memory, nothing real runs),
// `kscribe serve` in front of it, a short agent script with the real kubectl, then the recorded
// session printed with the viewer. Every process it starts runs in its own process group, dies
// with the demo (PR_SET_PDEATHSIG) and is stopped on every exit path, Ctrl-C included.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include "agent/cli.h"
#include "agent/config.h"
#include "agent/encoding.h"
#include "agent/session_store.h"
#include "agent/session_view.h"

#ifndef KSCRIBE_SOURCE_DIR
#define KSCRIBE_SOURCE_DIR ""
#endif
#ifndef KSCRIBE_DEMO_DIR
#define KSCRIBE_DEMO_DIR ""
#endif

namespace kscribe::cli {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kAgent = "demo-agent";
constexpr auto kIdleTimeout = 2s;           // short, so the session closes soon after the script
constexpr auto kStartTimeout = 30s;         // API server and proxy start-up
constexpr auto kCommandTimeout = 30s;       // one kubectl command
constexpr auto kSessionCloseTimeout = 20s;  // idle timeout plus the writer's flush

// Process groups to kill if the demo is interrupted; read by the signal handler.
constexpr int kMaxChildren = 8;
volatile sig_atomic_t g_groups[kMaxChildren] = {};

void onSignal(int sig) {
  for (int i = 0; i < kMaxChildren; ++i)
    if (g_groups[i] > 0) ::kill(-static_cast<pid_t>(g_groups[i]), SIGKILL);
  // Only async-signal-safe calls here: write(2) and _exit(2).
  const char msg[] = "\nkscribe demo: interrupted; stopped everything it started\n";
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  ::_exit(128 + sig);
}

void track(pid_t pgid, bool on) {
  for (int i = 0; i < kMaxChildren; ++i) {
    if (on && g_groups[i] == 0) {
      g_groups[i] = pgid;
      return;
    }
    if (!on && g_groups[i] == pgid) {
      g_groups[i] = 0;
      return;
    }
  }
}

/// A child process in its own process group, output to a file; the destructor stops the group.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const fs::path& log,
        const std::vector<std::string>& env) {
    std::vector<char*> args, envp;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    const pid_t parent = ::getpid();
    // Blocked across fork so a Ctrl-C cannot land between fork and track().
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_ = ::fork();
    if (pid_ < 0) {
      sigprocmask(SIG_SETMASK, &old, nullptr);
      throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    }
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the demo died before prctl
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      sigprocmask(SIG_SETMASK, &old, nullptr);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0 || null < 0) ::_exit(127);
      ::dup2(null, STDIN_FILENO);
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::execve(args[0], args.data(), envp.data());
      ::_exit(127);
    }
    ::setpgid(pid_, pid_);  // also in the parent: no race with kill(-pgid)
    track(pid_, true);
    sigprocmask(SIG_SETMASK, &old, nullptr);
  }
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool running() {
    if (done_) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) finish(status);
    return !done_;
  }
  /// Waits up to `timeout`; std::nullopt if still running.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (running()) {
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(20ms);
    }
    return code_;
  }
  /// SIGTERM to the group, SIGKILL after a grace period; returns the exit code.
  int stop(std::chrono::milliseconds grace = 5s) {
    if (!done_ && running()) {
      ::kill(-pid_, SIGTERM);
      if (!wait(grace)) {
        ::kill(-pid_, SIGKILL);
        int status = 0;
        if (::waitpid(pid_, &status, 0) == pid_) finish(status);
      }
    }
    // Anything the child left in its group goes too.
    ::kill(-pid_, SIGKILL);
    track(pid_, false);
    return code_;
  }

 private:
  void finish(int status) {
    done_ = true;
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  pid_t pid_ = -1;
  bool done_ = false;
  int code_ = -1;
};

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail(const std::string& s, std::size_t n = 3000) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

std::uint16_t freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot pick a free loopback port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

bool canConnect(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

fs::path selfExe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot find the kscribe binary (/proc/self/exe)");
  return p;
}

/// The bundled demo API server: beside the binary's install prefix, else in the source tree.
fs::path findDemoServer() {
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("KSCRIBE_DEMO_SERVER"); env && *env)
    candidates.emplace_back(env);
  const fs::path exe_dir = selfExe().parent_path();
  candidates.push_back(exe_dir.parent_path() / "share/kscribe/demo/server.py");
  if (*KSCRIBE_DEMO_DIR) candidates.push_back(fs::path(KSCRIBE_DEMO_DIR) / "server.py");
  if (*KSCRIBE_SOURCE_DIR)
    candidates.push_back(fs::path(KSCRIBE_SOURCE_DIR) / "tests/apiserver/server.py");
  for (const auto& c : candidates)
    if (fs::is_regular_file(c)) return c;
  std::string msg = "the bundled demo API server is not installed; looked for:";
  for (const auto& c : candidates) msg += "\n  " + c.string();
  throw std::runtime_error(msg);
}

fs::path findProgram(const std::vector<fs::path>& candidates, const char* what) {
  for (const auto& c : candidates)
    if (::access(c.c_str(), X_OK) == 0) return c;
  throw std::runtime_error(std::string(what) + " not found (looked in " +
                           candidates.front().parent_path().string() + "); deploy/install-deps.sh");
}

std::string randomHex(int bytes) {
  std::random_device rd;
  std::string s;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < bytes; ++i) {
    unsigned v = rd() & 0xff;
    s += kHex[v >> 4];
    s += kHex[v & 15];
  }
  return s;
}

struct Step {
  std::string show;               // what is printed
  std::vector<std::string> args;  // kubectl arguments
  int replicas = 0;               // > 0: write deployment.yaml with this many replicas first
  std::chrono::milliseconds stop_after{0};  // > 0: a watch, stopped after this long
  bool hide_output = false;                 // the output holds the Secret's value
};

class Demo {
 public:
  Demo(fs::path dir, bool keep_color) : dir_(std::move(dir)), color_(keep_color) {}
  int run();

 private:
  void say(const std::string& s) { std::cout << s << std::endl; }
  int kscribe(const std::vector<std::string>& args, const std::string& log_name);
  void startApiServer();
  void configureHome();
  void startServe();
  bool runStep(const Step& step, int n);
  bool waitForClosedSession();
  int checkAndPrint();

  fs::path dir_;
  bool color_;
  fs::path exe_ = selfExe();
  fs::path python_ = findProgram({"/usr/bin/python3"}, "Debian's python3");
  fs::path kubectl_ = findProgram({"/usr/bin/kubectl", "/usr/local/bin/kubectl"}, "kubectl");
  fs::path server_py_ = findDemoServer();
  fs::path home_ = dir_ / "home";
  fs::path api_dir_ = dir_ / "demo-apiserver";
  fs::path logs_ = dir_ / "logs";
  std::unique_ptr<Child> api_, serve_;
  std::uint16_t proxy_port_ = 0;
  fs::path agent_kubeconfig_;
  // Tests pass their own value to look for; otherwise a fresh one per run.
  std::string planted_ = std::getenv("KSCRIBE_DEMO_SECRET") && *std::getenv("KSCRIBE_DEMO_SECRET")
                             ? std::getenv("KSCRIBE_DEMO_SECRET")
                             : "demo-s3cr3t-" + randomHex(8);
  Config config_;
};

int Demo::kscribe(const std::vector<std::string>& args, const std::string& log_name) {
  std::vector<std::string> argv{exe_.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  Child c(argv, logs_ / log_name, {"PATH=/usr/bin:/bin", "HOME=" + dir_.string()});
  auto rc = c.wait(kStartTimeout);
  if (!rc) {
    c.stop();
    throw std::runtime_error("kscribe " + args.front() + " did not finish");
  }
  if (*rc != 0)
    throw std::runtime_error("kscribe " + args.front() + " failed (" + std::to_string(*rc) +
                             "): " + tail(readFile(logs_ / log_name)));
  return *rc;
}

void Demo::startApiServer() {
  const fs::path port_file = api_dir_ / "port";
  api_ = std::make_unique<Child>(
      std::vector<std::string>{python_.string(), server_py_.string(), "--port", "0", "--port-file",
                               port_file.string(), "--cert-dir", (api_dir_ / "certs").string(),
                               "--kubeconfig-out", (api_dir_ / "kubeconfig").string(), "--quiet"},
      logs_ / "demo-apiserver.log",
      std::vector<std::string>{"PATH=/usr/bin:/bin", "HOME=" + dir_.string(), "LANG=C.UTF-8"});
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (!fs::exists(port_file)) {
    if (!api_->running())
      throw std::runtime_error("the demo API server exited: " +
                               tail(readFile(logs_ / "demo-apiserver.log")));
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("the demo API server did not start within 30s");
    std::this_thread::sleep_for(50ms);
  }
  // The port file is written once listening; it may be seen before its content is flushed.
  std::string port;
  while ((port = readFile(port_file)).empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  say("  demo API server (in memory, a DEMO: no cluster runs)  https://127.0.0.1:" +
      std::string(port.substr(0, port.find_first_of("\r\n"))));
}

void Demo::configureHome() {
  kscribe({"init", "--home", home_.string()}, "kscribe-init.log");
  const fs::path cfg_file = home_ / "config.yaml";
  // `agent add` writes the proxy's address into the kubeconfig, so the port is set first.
  proxy_port_ = freePort();
  auto edit = [&] {
    Config c = loadConfig(cfg_file, home_);
    c.listen.address = "127.0.0.1";
    c.listen.port = proxy_port_;
    c.upstream.in_cluster = false;
    c.upstream.kubeconfig = api_dir_ / "kubeconfig";
    c.upstream.context = "kscribe-test";
    c.attribution = ::geteuid() == 0 ? "optional" : "off";
    c.sessions.api.idle_timeout = std::chrono::duration_cast<Duration>(kIdleTimeout);
    c.metrics.enabled = false;
    c.shipping.enabled = false;
    std::ofstream out(cfg_file, std::ios::trunc);
    out << configFileHeader() << "# Written by `kscribe demo`: a demo home, not for real use.\n"
        << toYaml(c);
    if (!out) throw std::runtime_error("cannot write " + cfg_file.string());
    config_ = c;
  };
  edit();
  kscribe({"agent", "add", kAgent, "--home", home_.string()}, "kscribe-agent-add.log");
  edit();  // `agent add` rewrote the file; keep the demo's settings whatever it did
  agent_kubeconfig_ = home_ / "agents" / kAgent / "kubeconfig";
  if (!fs::exists(agent_kubeconfig_))
    throw std::runtime_error("kscribe agent add wrote no " + agent_kubeconfig_.string());
  say("  kscribe home " + home_.string() + "  (agent " + kAgent + ", idle timeout 2s)");
}

void Demo::startServe() {
  serve_ = std::make_unique<Child>(
      std::vector<std::string>{exe_.string(), "serve", "--config",
                               (home_ / "config.yaml").string()},
      logs_ / "kscribe-serve.log",
      std::vector<std::string>{"PATH=/usr/bin:/bin", "HOME=" + dir_.string()});
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (!canConnect(proxy_port_)) {
    if (!serve_->running())
      throw std::runtime_error("kscribe serve exited: " +
                               tail(readFile(logs_ / "kscribe-serve.log")));
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("kscribe serve did not listen within 30s");
    std::this_thread::sleep_for(50ms);
  }
  say("  kscribe serve    https://127.0.0.1:" + std::to_string(proxy_port_) + "  (attribution " +
      (config_.attribution == "off" ? "off: not root, so no BPF; sessions are unattributed"
                                    : "on (BPF, root)") +
      ")");
}

bool Demo::runStep(const Step& step, int n) {
  say("$ " + step.show);
  std::vector<std::string> argv{kubectl_.string()};
  argv.insert(argv.end(), step.args.begin(), step.args.end());
  const fs::path log = logs_ / ("kubectl-" + std::to_string(n) + ".log");
  Child c(argv, log,
          {"PATH=/usr/bin:/bin", "HOME=" + (dir_ / "kubectl-home").string(),
           "KUBECONFIG=" + agent_kubeconfig_.string(), "LANG=C.UTF-8", "NO_PROXY=*"});
  std::optional<int> rc;
  if (step.stop_after.count() > 0) {
    rc = c.wait(step.stop_after);
    if (!rc) {
      c.stop(2s);
      rc = 0;  // a watch ends when we stop it
    }
  } else {
    rc = c.wait(kCommandTimeout);
    if (!rc) c.stop(2s);
  }
  std::string out = readFile(log);
  if (step.hide_output && rc && *rc == 0) {
    say("  (kubectl printed the Secret with its value: not shown here)");
  } else {
    std::istringstream lines(out);
    std::string line;
    while (std::getline(lines, line)) say("  " + safeText(line));
  }
  if (!rc || *rc != 0) {
    std::cerr << "kscribe demo: kubectl failed (" << (rc ? std::to_string(*rc) : "timeout")
              << ")\n";
    return false;
  }
  return true;
}

bool Demo::waitForClosedSession() {
  const auto deadline = std::chrono::steady_clock::now() + kSessionCloseTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto sessions = listSessions({config_.sessions.api.storage, false, {}});
    bool any = !sessions.empty();
    bool all_closed = any;
    for (const auto& s : sessions) all_closed = all_closed && s.status != "open";
    if (all_closed) return true;
    if (!serve_->running()) return false;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

int Demo::checkAndPrint() {
  auto sessions = listSessions({config_.sessions.api.storage, false, {}});
  std::reverse(sessions.begin(), sessions.end());  // oldest first reads like a story
  const ViewOptions view{color_};
  for (const auto& s : sessions) {
    std::cout << "\n";
    printSession(std::cout, s, readRecords(s.jsonl), view);
  }
  // The promise: no Secret value anywhere kscribe wrote, plain or base64 (once or twice).
  const std::vector<std::string> needles{planted_, base64(planted_), base64(base64(planted_))};
  std::vector<fs::path> written;
  std::vector<std::string> leaks;
  for (const auto& e : fs::recursive_directory_iterator(home_)) {
    if (!e.is_regular_file()) continue;
    written.push_back(e.path());
    const std::string content = readFile(e.path());
    for (const auto& n : needles)
      if (content.find(n) != std::string::npos) leaks.push_back(e.path().string());
  }
  if (!sessions.empty()) {
    // The first exchange that read the Secret back, shown with its bodies.
    for (const auto& r : readRecords(sessions.back().jsonl)) {
      if (r.value("method", "") == "GET" && r.value("resource", nlohmann::json()) == "secrets" &&
          r.value("name", nlohmann::json()) == "demo-db") {
        std::cout << "\nThe Secret read back, as recorded (kscribe sessions show --body "
                  << r.value("seq", 0) << "):\n";
        printExchange(std::cout, r, view);
        break;
      }
    }
    const fs::path report = dir_ / "report.html";
    std::ofstream out(report, std::ios::trunc);
    writeHtmlReport(out, sessions.back(), readRecords(sessions.back().jsonl));
    written.push_back(report);
  }
  std::sort(written.begin(), written.end());
  std::cout << "\nFiles kscribe wrote:\n";
  for (const auto& p : written) {
    std::error_code ec;
    std::cout << "  " << p.string() << "  (" << humanBytes(fs::file_size(p, ec)) << ")\n";
  }
  std::cout << "Demo API server and logs: " << api_dir_.string() << ", " << logs_.string() << "\n";
  if (sessions.empty()) {
    std::cerr << "kscribe demo: no session was recorded\n";
    return kExitFailure;
  }
  if (!leaks.empty()) {
    std::cerr << "kscribe demo: the planted Secret value was found in:";
    for (const auto& l : leaks) std::cerr << " " << l;
    std::cerr << "\n";
    return kExitFailure;
  }
  std::cout << "\nThe Secret's value (" << planted_.size()
            << " characters, planted by this demo) appears in none of the " << written.size()
            << " files: recorded as [REDACTED].\n"
            << "Next: kscribe sessions list --home " << home_.string() << "\n"
            << "      kscribe sessions show " << sessions.back().id << " --home " << home_.string()
            << "\n"
            << "      open " << (dir_ / "report.html").string() << "\n"
            << "Remove the demo with: rm -rf " << dir_.string() << "\n";
  return kExitOk;
}

int Demo::run() {
  fs::create_directories(logs_);
  fs::create_directories(api_dir_);
  fs::create_directories(dir_ / "kubectl-home");
  say("kscribe demo: a DEMO API server, kscribe in front of it, and kubectl as the agent");
  say("  working in " + dir_.string());
  startApiServer();
  configureHome();
  startServe();

  const fs::path deploy = dir_ / "deployment.yaml";
  auto writeDeployment = [&](int replicas) {
    std::ofstream(deploy, std::ios::trunc)
        << "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: "
           "default\nspec:\n  replicas: "
        << replicas
        << "\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      "
           "labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        "
           "image: nginx:1.27\n";
  };
  say("\nThe agent's script (kubectl through kscribe):");
  std::vector<Step> steps = {
      {"kubectl get pods", {"get", "pods", "-n", "default"}},
      {"kubectl create configmap demo-config --from-literal=mode=blue",
       {"create", "configmap", "demo-config", "-n", "default", "--from-literal=mode=blue"}},
      {"kubectl create secret generic demo-db --from-literal=password=<planted value>",
       {"create", "secret", "generic", "demo-db", "-n", "default",
        "--from-literal=password=" + planted_}},
      {"kubectl get secret demo-db -o yaml",
       {"get", "secret", "demo-db", "-n", "default", "-o", "yaml"},
       0,
       0ms,
       true},
      {"kubectl apply -f deployment.yaml  (replicas: 1)", {"apply", "-f", deploy.string()}, 1},
      {"kubectl apply -f deployment.yaml  (replicas: 2)", {"apply", "-f", deploy.string()}, 2},
      {"kubectl delete configmap demo-config",
       {"delete", "configmap", "demo-config", "-n", "default"}},
      {"kubectl get pods --watch  (stopped after 1.5s)",
       {"get", "pods", "-n", "default", "--watch"},
       0,
       1500ms},
  };
  int n = 0;
  for (const auto& step : steps) {
    if (step.replicas > 0) writeDeployment(step.replicas);
    if (!runStep(step, ++n)) {
      std::cerr << "kscribe serve log: " << (logs_ / "kscribe-serve.log").string() << "\n";
      return kExitFailure;
    }
  }
  say("\nWaiting for the session to close (idle timeout 2s)...");
  const bool closed = waitForClosedSession();
  serve_->stop();  // shutdown closes anything still open
  api_->stop();
  if (!closed) std::cerr << "kscribe demo: the session did not close by idle timeout\n";
  const int rc = checkAndPrint();
  return closed ? rc : kExitFailure;
}

}  // namespace

void addDemo(CLI::App& app, Runner& run) {
  struct Opts {
    fs::path dir;
    std::string color = "auto";
  };
  auto opts = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand(
      "demo",
      "Record a short kubectl session through kscribe against a bundled DEMO API server and "
      "show it (needs nothing configured; leaves nothing running)");
  cmd->add_option("--dir", opts->dir,
                  "Where the demo writes its files (default: a new directory under $TMPDIR)");
  cmd->add_option("--color", opts->color, "auto, always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  cmd->callback([&run, opts] {
    run = [opts] {
      fs::path dir = opts->dir;
      if (dir.empty()) {
        const char* tmp = std::getenv("TMPDIR");
        std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/kscribe-demo-XXXXXX";
        if (!::mkdtemp(templ.data()))
          throw std::runtime_error("cannot create a directory under " + templ);
        dir = templ;
      } else {
        fs::create_directories(dir);
        if (!fs::is_empty(dir)) throw ConfigError("--dir", dir.string() + " is not empty");
      }
      ::chmod(dir.c_str(), 0700);
      bool color = opts->color == "always";
      if (opts->color == "auto") {
        const char* nc = std::getenv("NO_COLOR");
        color = isatty(STDOUT_FILENO) == 1 && !(nc && *nc);
      }
      struct sigaction sa {};
      sa.sa_handler = onSignal;
      sigemptyset(&sa.sa_mask);
      for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
      Demo demo(dir, color);
      return demo.run();
    };
  });
}

}  // namespace kscribe::cli
