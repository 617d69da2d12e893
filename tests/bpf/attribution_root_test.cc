// Real clients connect to a port registered with the real BPF program; each is attributed with
// the right tgid, tid, comm, uid, cgroup id (== the cgroup directory's inode), netns and exe.
// Needs root: loads BPF, creates cgroups, a network namespace and a veth pair.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "agent/attribution.h"
#include "agent/bpf_loader.h"

namespace kscribe {
namespace {

// What a client child reports about itself once connected.
struct Report {
  std::int32_t pid = 0;
  std::int32_t tid = 0;
  std::uint64_t netns_cookie = 0;
  std::uint64_t netns_ino = 0;
  std::uint64_t cgroup_ino = 0;
  char comm[16] = {};
  char error[160] = {};
};

std::uint64_t statIno(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? st.st_ino : 0;
}

std::string ownCgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return "/";
}

int listenOn(const char* ip, std::uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, ip, &a.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0) {
    ADD_FAILURE() << "listen on " << ip << ": " << std::strerror(errno);
    return -1;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// Connects and fills the report from the connecting thread's point of view.
int connectAndReport(const std::string& ip, std::uint16_t port, Report* r) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::snprintf(r->error, sizeof r->error, "connect %s:%u: %s", ip.c_str(), port,
                  std::strerror(errno));
    return -1;
  }
  r->pid = getpid();
  r->tid = gettid();
  socklen_t len = sizeof r->netns_cookie;
  ::getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &r->netns_cookie, &len);
  r->netns_ino = statIno("/proc/thread-self/ns/net");
  r->cgroup_ino = statIno(findCgroup2Mount().string() + ownCgroup());
  ::prctl(PR_GET_NAME, r->comm);
  return fd;
}

// A client in a forked child: `setup` runs first (cgroup, netns, uid), then it connects (from a
// second thread if asked), reports, and holds the connection until the parent releases it.
class Client {
 public:
  struct Options {
    std::string ip = "127.0.0.1";
    std::uint16_t port = 0;
    std::string name = "kscribe-client";
    bool from_thread = false;
    std::function<std::string()> setup;  // returns an error text, or ""
  };

  Client(std::uint16_t port, std::string name, std::function<std::string()> setup = {},
         bool from_thread = false, std::string ip = "127.0.0.1")
      : Client(Options{std::move(ip), port, std::move(name), from_thread, std::move(setup)}) {}

  explicit Client(Options o) {
    int rep[2], ctl[2];
    EXPECT_EQ(::pipe2(rep, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(ctl, O_CLOEXEC), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(rep[0]);
      ::close(ctl[1]);
      Report r;
      std::string err = o.setup ? o.setup() : "";
      ::prctl(PR_SET_NAME, o.name.c_str());
      int fd = -1;
      if (!err.empty()) {
        std::snprintf(r.error, sizeof r.error, "%s", err.c_str());
      } else if (o.from_thread) {
        std::thread t([&] {
          ::prctl(PR_SET_NAME, (o.name + "-t").substr(0, 15).c_str());
          fd = connectAndReport(o.ip, o.port, &r);
        });
        t.join();
      } else {
        fd = connectAndReport(o.ip, o.port, &r);
      }
      (void)!::write(rep[1], &r, sizeof r);
      char c;
      (void)!::read(ctl[0], &c, 1);  // until the parent closes its end
      if (fd >= 0) ::close(fd);
      _exit(0);
    }
    ::close(rep[1]);
    ::close(ctl[0]);
    ctl_ = ctl[1];
    ssize_t n = ::read(rep[0], &report_, sizeof report_);
    EXPECT_EQ(n, static_cast<ssize_t>(sizeof report_));
    ::close(rep[0]);
  }
  ~Client() { release(); }
  // Lets the child close its socket and exit; reaps it.
  void release() {
    if (ctl_ >= 0) ::close(ctl_);
    ctl_ = -1;
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  const Report& report() const { return report_; }

 private:
  pid_t pid_ = -1;
  int ctl_ = -1;
  Report report_;
};

std::string writeFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return path + ": " + std::strerror(errno);
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  return n == static_cast<ssize_t>(text.size()) ? "" : path + ": " + std::strerror(err);
}

class AttributionRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF, creates cgroups and a netns";
    loader_ = std::make_unique<BpfLoader>();
    source_ = std::make_unique<BpfAttribution>(*loader_, "/proc", loader_->cgroup());
    lfd_ = listenOn("127.0.0.1", &port_);
    loader_->addPort(port_);
  }
  void TearDown() override {
    if (lfd_ >= 0) ::close(lfd_);
    for (auto it = cgroups_.rbegin(); it != cgroups_.rend(); ++it) ::rmdir(it->c_str());
  }

  std::string makeCgroup(const std::string& rel) {
    std::string dir = loader_->cgroup().string() + rel;
    EXPECT_EQ(::mkdir(dir.c_str(), 0755), 0) << dir << ": " << std::strerror(errno);
    cgroups_.push_back(dir);
    return dir;
  }

  // Accepts the pending connection and asks the attribution source about it.
  std::shared_ptr<const proxy::Attribution> acceptAndLookup(int lfd, int* afd_out = nullptr) {
    int afd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    EXPECT_GE(afd, 0);
    auto a = source_->lookup(afd);
    raw_ = loader_->lookup(afd);
    if (afd_out)
      *afd_out = afd;
    else
      ::close(afd);
    return a;
  }

  void expectOwner(const proxy::Attribution& a, const Report& r, std::uint32_t uid,
                   const std::string& cgroup_dir) {
    ASSERT_EQ(r.error[0], '\0') << r.error;
    ASSERT_EQ(a.status, proxy::Attribution::Status::kAttributed);
    EXPECT_EQ(a.tgid, static_cast<std::uint32_t>(r.pid));
    EXPECT_EQ(a.tid, static_cast<std::uint32_t>(r.tid));
    EXPECT_EQ(a.comm, r.comm);
    EXPECT_EQ(a.uid, uid);
    EXPECT_EQ(a.gid, uid == 0 ? 0u : 65534u);
    EXPECT_EQ(a.cgroup_id, statIno(cgroup_dir)) << cgroup_dir;
    EXPECT_EQ(a.cgroup_id, r.cgroup_ino);
    EXPECT_EQ(a.cgroup_path, cgroup_dir.substr(loader_->cgroup().string().size()).empty()
                                 ? "/"
                                 : cgroup_dir.substr(loader_->cgroup().string().size()));
    EXPECT_EQ(a.netns_cookie, r.netns_cookie);
    EXPECT_FALSE(a.process_exited);
    // A forked child of this test binary: same executable.
    EXPECT_EQ(a.exe, std::filesystem::read_symlink("/proc/self/exe").string());
    EXPECT_EQ(a.ppid, static_cast<std::uint32_t>(getpid()));
    ASSERT_TRUE(raw_.has_value());
    if (raw_->flags & KSCRIBE_OWNER_HAVE_NETNS_INO) {
      EXPECT_EQ(raw_->netns_ino, r.netns_ino);
    }
  }

  std::unique_ptr<BpfLoader> loader_;
  std::unique_ptr<BpfAttribution> source_;
  std::optional<kscribe_owner> raw_;
  std::vector<std::string> cgroups_;
  int lfd_ = -1;
  std::uint16_t port_ = 0;
};

std::string mountRoot() { return findCgroup2Mount().string(); }

TEST_F(AttributionRoot, ClientInTheTestsCgroup) {
  Client c(port_, "kscribe-plain");
  auto a = acceptAndLookup(lfd_);
  expectOwner(*a, c.report(), 0, mountRoot() + (ownCgroup() == "/" ? "" : ownCgroup()));
  EXPECT_EQ(a->comm, "kscribe-plain");
}

TEST_F(AttributionRoot, ClientInTheRootCgroup) {
  Client c(port_, "kscribe-root", [] { return writeFile(mountRoot() + "/cgroup.procs", "0"); });
  auto a = acceptAndLookup(lfd_);
  expectOwner(*a, c.report(), 0, mountRoot());
  EXPECT_EQ(a->cgroup_id, 1u) << "the cgroup v2 root has id 1";
}

TEST_F(AttributionRoot, ClientInChildAndNestedCgroups) {
  std::string base = "/kscribe-test-" + std::to_string(getpid());
  std::string child = makeCgroup(base);
  std::string nested = makeCgroup(base + "/nested");
  std::string deeper = makeCgroup(base + "/nested/deeper");
  for (const std::string& dir : {child, deeper}) {
    Client c(port_, "kscribe-cg", [dir] { return writeFile(dir + "/cgroup.procs", "0"); });
    auto a = acceptAndLookup(lfd_);
    expectOwner(*a, c.report(), 0, dir);
  }
  (void)nested;
}

TEST_F(AttributionRoot, ClientOnANonMainThread) {
  Client c(port_, "kscribe-thr", {}, true);
  auto a = acceptAndLookup(lfd_);
  expectOwner(*a, c.report(), 0, mountRoot() + (ownCgroup() == "/" ? "" : ownCgroup()));
  EXPECT_NE(a->tid, a->tgid);
  EXPECT_EQ(a->comm, "kscribe-thr-t");  // the connecting thread's comm
}

TEST_F(AttributionRoot, ClientUnderAnotherUid) {
  Client c(port_, "kscribe-nobody", [] {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)
      return std::string("setresuid: ") + std::strerror(errno);
    return std::string();
  });
  auto a = acceptAndLookup(lfd_);
  expectOwner(*a, c.report(), 65534, mountRoot() + (ownCgroup() == "/" ? "" : ownCgroup()));
}

// A second network namespace joined to this one by a veth pair; addresses from a /30 used only
// between the two ends, inside this test.
class Netns {
 public:
  Netns() {
    std::string id = std::to_string(getpid() % 100000);
    name_ = "kscribe-t" + id;
    host_if_ = "ksh" + id;
    peer_if_ = "ksp" + id;
    ok_ = sh("ip netns add " + name_) &&
          sh("ip link add " + host_if_ + " type veth peer name " + peer_if_ + " netns " + name_) &&
          sh("ip addr add " + std::string(kHostIp) + "/30 dev " + host_if_) &&
          sh("ip link set " + host_if_ + " up") &&
          sh("ip -n " + name_ + " addr add " + std::string(kPeerIp) + "/30 dev " + peer_if_) &&
          sh("ip -n " + name_ + " link set " + peer_if_ + " up") &&
          sh("ip -n " + name_ + " link set lo up");
  }
  ~Netns() {
    sh("ip link del " + host_if_ + " 2>/dev/null");
    sh("ip netns del " + name_ + " 2>/dev/null");
  }
  bool ok() const { return ok_; }
  // Enters the namespace the way `nsenter --net=` does: setns on its file, cgroup2 mount intact.
  std::string enter() const {
    int fd = ::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) return "setns: " + std::string(strerror(errno));
    ::close(fd);
    return "";
  }
  static constexpr const char* kHostIp = "10.231.197.1";
  static constexpr const char* kPeerIp = "10.231.197.2";

 private:
  static bool sh(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }
  std::string name_, host_if_, peer_if_;
  bool ok_ = false;
};

TEST_F(AttributionRoot, ClientInASecondNetworkNamespaceOverVeth) {
  Netns ns;
  ASSERT_TRUE(ns.ok()) << "could not create the netns and veth pair";
  std::uint16_t port = 0;
  int lfd = listenOn(Netns::kHostIp, &port);
  ASSERT_GE(lfd, 0);
  loader_->addPort(port);
  Client c(
      port, "kscribe-netns", [&ns] { return ns.enter(); }, false, Netns::kHostIp);
  auto a = acceptAndLookup(lfd);
  ::close(lfd);
  expectOwner(*a, c.report(), 0, mountRoot() + (ownCgroup() == "/" ? "" : ownCgroup()));
  std::uint64_t own_cookie = 0;
  socklen_t len = sizeof own_cookie;
  ::getsockopt(lfd_, SOL_SOCKET, SO_NETNS_COOKIE, &own_cookie, &len);
  EXPECT_NE(a->netns_cookie, own_cookie) << "the client's netns, not the proxy's";
  EXPECT_NE(c.report().netns_ino, statIno("/proc/self/ns/net"));
}

TEST_F(AttributionRoot, AnotherExecutableIsNamedByItsExe) {
  // A Python client: exe, comm and cmdline come from a different program than the test.
  int rep[2], ctl[2];
  ASSERT_EQ(::pipe(rep), 0);
  ASSERT_EQ(::pipe(ctl), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(rep[1], 1);
    ::dup2(ctl[0], 0);
    ::close(rep[0]);
    ::close(ctl[1]);
    std::string code = "import socket,os,sys; s=socket.create_connection(('127.0.0.1'," +
                       std::to_string(port_) +
                       ")); print(os.getpid(), flush=True); sys.stdin.read()";
    ::execl("/usr/bin/python3", "python3", "-c", code.c_str(), nullptr);
    _exit(127);
  }
  ::close(rep[1]);
  ::close(ctl[0]);
  char buf[32] = {};
  ASSERT_GT(::read(rep[0], buf, sizeof buf - 1), 0);
  auto a = acceptAndLookup(lfd_);
  ::close(ctl[1]);
  ::close(rep[0]);
  ::waitpid(pid, nullptr, 0);
  ASSERT_EQ(a->status, proxy::Attribution::Status::kAttributed);
  EXPECT_EQ(a->tgid, static_cast<std::uint32_t>(std::atoi(buf)));
  EXPECT_EQ(a->comm, "python3");
  EXPECT_EQ(a->exe, std::filesystem::canonical("/usr/bin/python3").string());
  EXPECT_EQ(a->cmdline.rfind("python3 -c import socket", 0), 0u) << a->cmdline;
  EXPECT_EQ(a->ppid, static_cast<std::uint32_t>(getpid()));
}

TEST_F(AttributionRoot, ReusedPidIsNotMistakenForTheProcessThatConnected) {
  // Process A connects and exits; a new process B is created with A's pid (clone3 set_tid, which
  // needs CAP_SYS_ADMIN in the initial pid namespace). The connection still names A, and nothing
  // of B's (exe, cmdline, start time) is taken for A's.
  int afd = -1;
  Report ra;
  {
    Client a_client(port_, "kscribe-old");
    ra = a_client.report();
    auto a = acceptAndLookup(lfd_, &afd);
    ASSERT_EQ(a->status, proxy::Attribution::Status::kAttributed);
    EXPECT_FALSE(a->process_exited);
    a_client.release();  // A exits and is reaped: its pid is free
  }
  ASSERT_EQ(ra.error[0], '\0') << ra.error;

  // /proc start times have clock-tick resolution (10 ms): a process that reuses a pid within
  // the same tick as the old one started is indistinguishable by (tgid, start time). Real pid
  // reuse needs the pid space to wrap, far slower than a tick; here it is forced, so B waits for
  // the next tick first.
  ASSERT_TRUE(raw_.has_value());
  const std::uint64_t ns_per_tick =
      1'000'000'000ULL / static_cast<std::uint64_t>(sysconf(_SC_CLK_TCK));
  auto bootNs = [] {
    timespec ts{};
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL +
           static_cast<std::uint64_t>(ts.tv_nsec);
  };
  const std::uint64_t a_start_tick =
      std::max(raw_->start_boottime_ns, raw_->connect_boot_ns) / ns_per_tick;
  while (bootNs() / ns_per_tick <= a_start_tick + 1) usleep(2000);

  pid_t want = ra.pid;
  int ctl[2];
  ASSERT_EQ(::pipe(ctl), 0);
  clone_args args{};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<std::uintptr_t>(&want);
  args.set_tid_size = 1;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) {
    ::close(ctl[1]);
    ::prctl(PR_SET_NAME, "kscribe-new");
    char c;
    (void)!::read(ctl[0], &c, 1);
    _exit(0);
  }
  ::close(ctl[0]);
  ASSERT_EQ(pid, want) << "clone3 set_tid: " << std::strerror(errno);
  // B is alive with A's pid, and started after A connected.
  std::string bcomm;
  for (int i = 0; i < 200 && bcomm != "kscribe-new"; ++i) {
    std::ifstream("/proc/" + std::to_string(pid) + "/comm") >> bcomm;
    if (bcomm != "kscribe-new") usleep(5000);
  }
  ASSERT_EQ(bcomm, "kscribe-new");

  auto a = source_->lookup(afd);
  ASSERT_EQ(a->status, proxy::Attribution::Status::kAttributed);
  EXPECT_EQ(a->tgid, static_cast<std::uint32_t>(want));
  EXPECT_EQ(a->comm, "kscribe-old") << "the kernel's account of A";
  EXPECT_TRUE(a->process_exited) << "pid reused by B, which is not A";
  EXPECT_EQ(a->exe, "");
  EXPECT_EQ(a->cmdline, "");
  auto b = readProcess("/proc", static_cast<std::uint32_t>(pid));
  ASSERT_TRUE(b.has_value());
  if (loader_->readsTask()) {
    EXPECT_NE(a->start_time, b->start_time);
  }
  ::close(ctl[1]);
  ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
  ::close(afd);
}

TEST_F(AttributionRoot, ConnectionTheProgramDidNotSeeIsUnattributed) {
  std::uint16_t port = 0;
  int lfd = listenOn("127.0.0.1", &port);  // not registered as a proxy port
  Client c(port, "kscribe-unseen");
  auto a = acceptAndLookup(lfd);
  ::close(lfd);
  EXPECT_EQ(a->status, proxy::Attribution::Status::kUnattributed);
  EXPECT_EQ(a->tgid, 0u);
}

TEST_F(AttributionRoot, CountersExportJoinsAndMisses) {
  auto before = loader_->counters();
  {
    Client c(port_, "kscribe-count");
    acceptAndLookup(lfd_);
  }
  auto after = loader_->counters();
  EXPECT_GE(after[KSCRIBE_CNT_CONNECT] - before[KSCRIBE_CNT_CONNECT], 1u);
  EXPECT_GE(after[KSCRIBE_CNT_ACCEPT] - before[KSCRIBE_CNT_ACCEPT], 1u);
  EXPECT_GE(after[KSCRIBE_CNT_JOINED] - before[KSCRIBE_CNT_JOINED], 1u);
}

}  // namespace
}  // namespace kscribe
