// Enrichment from a fixture /proc (tests/agent/fixtures/proc), the pid-reuse check, and the
// attribution modes when BPF cannot run.
#include "agent/attribution.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "agent/bpf_loader.h"

namespace kscribe {
namespace {

const std::filesystem::path kFixtures =
    std::filesystem::path(KSCRIBE_SOURCE_DIR) / "tests/agent/fixtures";
const std::uint64_t kNsPerTick =
    1'000'000'000ULL / static_cast<std::uint64_t>(sysconf(_SC_CLK_TCK));

kscribe_owner owner(std::uint32_t tgid, const char* comm) {
  kscribe_owner o{};
  o.tgid = tgid;
  o.tid = tgid + 1;
  o.uid = 1000;
  o.gid = 1001;
  o.cgroup_id = 1;
  o.abi_version = KSCRIBE_ABI_VERSION;
  std::strncpy(o.comm, comm, sizeof o.comm);
  return o;
}

TEST(ReadProcess, ParsesStatCmdlineAndExe) {
  auto p = readProcess(kFixtures / "proc", 4242);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->comm, "kubectl");
  EXPECT_EQ(p->ppid, 4100u);
  EXPECT_EQ(p->start_time, 123456u);
  EXPECT_EQ(p->exe, "/usr/local/bin/kubectl");
  EXPECT_EQ(p->cmdline, "kubectl get pods -n payments --token [REDACTED]");
  EXPECT_EQ(p->cmdline.find("fake-token"), std::string::npos);

  auto odd = readProcess(kFixtures / "proc", 5151);  // comm with spaces and parentheses
  ASSERT_TRUE(odd.has_value());
  EXPECT_EQ(odd->comm, "my (odd) proc");
  EXPECT_EQ(odd->ppid, 1u);
  EXPECT_EQ(odd->start_time, 999999u);
  EXPECT_EQ(odd->cmdline, "/opt/odd --password=[REDACTED] x");

  EXPECT_FALSE(readProcess(kFixtures / "proc", 9999).has_value());
}

TEST(RedactCmdline, CredentialFlags) {
  EXPECT_EQ(redactCmdline("kubectl --token=abc get pods"), "kubectl --token=[REDACTED] get pods");
  EXPECT_EQ(redactCmdline("x --client-key /k.pem --v=4"), "x --client-key [REDACTED] --v=4");
  EXPECT_EQ(redactCmdline("x --Password hunter2"), "x --Password [REDACTED]");
  EXPECT_EQ(redactCmdline("kubectl get secrets"), "kubectl get secrets");
}

TEST(Enrich, SameProcessGetsProcDetails) {
  CgroupResolver cgroups(kFixtures / "cgroup/cgroupfs");
  auto o = owner(4242, "kubectl");
  o.flags = KSCRIBE_OWNER_HAVE_START;
  o.start_boottime_ns = 123456 * kNsPerTick + 7'000'000;  // within the tick, as the kernel rounds
  o.connect_boot_ns = 200000 * kNsPerTick;
  auto a = enrich(o, kFixtures / "proc", cgroups);
  EXPECT_EQ(a.status, proxy::Attribution::Status::kAttributed);
  EXPECT_FALSE(a.process_exited);
  EXPECT_EQ(a.tgid, 4242u);
  EXPECT_EQ(a.tid, 4243u);
  EXPECT_EQ(a.uid, 1000u);
  EXPECT_EQ(a.gid, 1001u);
  EXPECT_EQ(a.comm, "kubectl");
  EXPECT_EQ(a.exe, "/usr/local/bin/kubectl");
  EXPECT_EQ(a.ppid, 4100u);
  EXPECT_EQ(a.start_time, 123456u);
}

TEST(Enrich, ReusedPidIsNotMistakenForTheProcessThatConnected) {
  CgroupResolver cgroups(kFixtures / "cgroup/cgroupfs");
  // The kernel recorded a process that started at tick 100000; pid 4242 now started at 123456.
  auto o = owner(4242, "old-proc");
  o.flags = KSCRIBE_OWNER_HAVE_START;
  o.start_boottime_ns = 100000 * kNsPerTick;
  o.connect_boot_ns = 110000 * kNsPerTick;
  auto a = enrich(o, kFixtures / "proc", cgroups);
  EXPECT_TRUE(a.process_exited);
  EXPECT_EQ(a.comm, "old-proc");  // the kernel's account stays
  EXPECT_EQ(a.start_time, 100000u);
  EXPECT_EQ(a.exe, "");
  EXPECT_EQ(a.cmdline, "");
  EXPECT_EQ(a.ppid, 0u);

  // Without the kernel's start time: a process that started after the connect is not it.
  o.flags = 0;
  o.start_boottime_ns = 0;
  a = enrich(o, kFixtures / "proc", cgroups);
  EXPECT_TRUE(a.process_exited);
  EXPECT_EQ(a.exe, "");
  o.connect_boot_ns = 123457 * kNsPerTick;  // connected after pid 4242 started: may be it
  a = enrich(o, kFixtures / "proc", cgroups);
  EXPECT_FALSE(a.process_exited);
  EXPECT_EQ(a.exe, "/usr/local/bin/kubectl");
}

TEST(Enrich, GoneProcessKeepsKernelFields) {
  CgroupResolver cgroups(kFixtures / "cgroup/cgroupfs");
  auto o = owner(9999, "gone");
  auto a = enrich(o, kFixtures / "proc", cgroups);
  EXPECT_EQ(a.status, proxy::Attribution::Status::kAttributed);
  EXPECT_TRUE(a.process_exited);
  EXPECT_EQ(a.tgid, 9999u);
  EXPECT_EQ(a.comm, "gone");
}

TEST(Enrich, CgroupPathGivesContainerAndPod) {
  auto root = kFixtures / "cgroup/cgroupfs";
  CgroupResolver cgroups(root);
  auto dir = root / "kubepods/besteffort/podc0ffee00-1111-4222-8333-444455556666" /
             "crio-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  auto o = owner(9999, "gone");
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  o.cgroup_id = st.st_ino;
  auto a = enrich(o, kFixtures / "proc", cgroups);
  EXPECT_EQ(a.cgroup_path, "/" + std::filesystem::relative(dir, root).string());
  EXPECT_EQ(a.container_runtime, "cri-o");
  EXPECT_EQ(a.container_id, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  EXPECT_EQ(a.pod_uid, "c0ffee00-1111-4222-8333-444455556666");
}

TEST(AttributionModes, OptionalWithoutBpfMarksEveryConnectionUnavailable) {
  // No kernel BTF at this path: the BPF side cannot start.
  auto rt = startAttribution("optional", {7443}, "/nonexistent/btf/vmlinux");
  EXPECT_EQ(rt.loader, nullptr);
  ASSERT_NE(rt.source, nullptr);
  auto a = rt.source->lookup(0);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->status, proxy::Attribution::Status::kUnavailable);
  EXPECT_STREQ(proxy::Attribution::statusName(a->status), "unavailable");
}

TEST(AttributionModes, OffNeverLoads) {
  auto rt = startAttribution("off", {7443});
  EXPECT_EQ(rt.loader, nullptr);
  rt.trackPort(7444);  // nothing to register: no throw
  EXPECT_EQ(rt.source->lookup(3)->status, proxy::Attribution::Status::kUnavailable);
}

TEST(AttributionModes, RequiredRefusesWithoutBtfAndSaysSo) {
  try {
    startAttribution("required", {7443}, "/nonexistent/btf/vmlinux");
    FAIL() << "required mode started without BTF";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("BTF"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("required"), std::string::npos) << e.what();
  }
}

TEST(AttributionModes, RequiredRefusesWithoutRootAndSaysSo) {
  // Runs the check as an unprivileged user (nobody) in a child when we are root.
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(pipefd[0]);
    if (geteuid() == 0 &&
        (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0))
      _exit(3);
    std::string msg;
    try {
      startAttribution("required", {7443});
      msg = "started";
    } catch (const std::exception& e) {
      msg = e.what();
    }
    (void)!::write(pipefd[1], msg.data(), msg.size());
    _exit(0);
  }
  ::close(pipefd[1]);
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) msg.append(buf, static_cast<std::size_t>(n));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_NE(msg.find("not root"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CAP_BPF"), std::string::npos) << msg;
}

}  // namespace
}  // namespace kscribe
