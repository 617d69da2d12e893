// The cgroup resolver on fixture trees of real path shapes (tests/agent/fixtures/cgroup/...):
// cgroupfs and systemd drivers; containerd, CRI-O and Docker.
#include "agent/cgroup_resolver.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>

namespace kscribe {
namespace {

const std::filesystem::path kFixtures =
    std::filesystem::path(KSCRIBE_SOURCE_DIR) / "tests/agent/fixtures/cgroup";
constexpr const char* kC1 = "3f5e1b9c8d7a6f5e4d3c2b1a0f9e8d7c6b5a49382716f5e4d3c2b1a0f9e8d7c6";
constexpr const char* kC2 = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";
constexpr const char* kC3 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
constexpr const char* kC4 = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
constexpr const char* kPodU = "7f3d9b2c-1a2b-4c5d-8e9f-0123456789ab";
constexpr const char* kPodV = "c0ffee00-1111-4222-8333-444455556666";

std::uint64_t inode(const std::filesystem::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_ino;
}

struct Case {
  std::string path, runtime, id, pod;
};

void expectParsed(const Case& c) {
  ContainerInfo info = parseCgroupPath(c.path);
  EXPECT_EQ(info.runtime, c.runtime) << c.path;
  EXPECT_EQ(info.container_id, c.id) << c.path;
  EXPECT_EQ(info.pod_uid, c.pod) << c.path;
}

TEST(ParseCgroupPath, CgroupfsDriver) {
  std::string u = kPodU, v = kPodV;
  expectParsed({"/kubepods/burstable/pod" + u + "/" + kC1, "containerd", kC1, u});
  expectParsed({"/kubepods/pod" + v + "/" + kC2, "containerd", kC2, v});  // guaranteed QoS
  expectParsed({"/kubepods/besteffort/pod" + v + "/crio-" + kC3, "cri-o", kC3, v});
  expectParsed({std::string("/docker/") + kC4, "docker", kC4, ""});
  expectParsed({"/kubepods/burstable/pod" + u, "", "", u});  // the pod cgroup itself
}

TEST(ParseCgroupPath, SystemdDriverEscapesPodUidDashes) {
  std::string u = kPodU, v = kPodV, u_ = u, v_ = v;
  std::replace(u_.begin(), u_.end(), '-', '_');
  std::replace(v_.begin(), v_.end(), '-', '_');
  expectParsed({"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + u_ +
                    ".slice/cri-containerd-" + kC1 + ".scope",
                "containerd", kC1, u});
  expectParsed({"/kubepods.slice/kubepods-pod" + v_ + ".slice/cri-containerd-" + kC2 + ".scope",
                "containerd", kC2, v});
  expectParsed({"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + v_ +
                    ".slice/crio-" + kC3 + ".scope",
                "cri-o", kC3, v});
  expectParsed({std::string("/system.slice/docker-") + kC4 + ".scope", "docker", kC4, ""});
}

TEST(ParseCgroupPath, NotContainers) {
  std::string v_ = kPodV;
  std::replace(v_.begin(), v_.end(), '-', '_');
  // CRI-O's monitor (conmon) sits beside the container: it is not the container.
  expectParsed({"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + v_ +
                    ".slice/crio-conmon-" + kC3 + ".scope",
                "", "", kPodV});
  expectParsed({"/", "", "", ""});
  expectParsed({"/user.slice/user-1000.slice/session-3.scope", "", "", ""});
  expectParsed({"/system.slice/containerd.service", "", "", ""});
  expectParsed({"/system.slice/docker-123.scope", "", "", ""});  // short id
  expectParsed({std::string("/some/") + kC1, "", "", ""});       // bare id, no pod/docker
  expectParsed({"/kubepods/burstable/podnot-a-uid/" + std::string(kC1), "", "", ""});
}

TEST(ParseCgroupPath, DeepestContainerWins) {
  // A container that made its own sub-cgroups (systemd inside, or nested runtimes).
  std::string p = std::string("/system.slice/docker-") + kC4 + ".scope/docker/" + kC1;
  expectParsed({p, "docker", kC1, ""});
  p = std::string("/system.slice/docker-") + kC4 + ".scope/init.scope";
  expectParsed({p, "docker", kC4, ""});
}

TEST(CgroupResolver, FindsEveryFixtureDirectoryByInode) {
  for (const char* driver : {"cgroupfs", "systemd"}) {
    auto root = kFixtures / driver;
    CgroupResolver r(root);
    EXPECT_EQ(r.pathForId(inode(root)), "/");
    for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
      if (!e.is_directory()) continue;
      auto rel = "/" + std::filesystem::relative(e.path(), root).string();
      EXPECT_EQ(r.pathForId(inode(e.path())), rel);
    }
    EXPECT_EQ(r.walks(), 1u) << "one walk fills the cache";
  }
}

TEST(CgroupResolver, ResolvesToContainerThroughThePath) {
  auto root = kFixtures / "systemd";
  CgroupResolver r(root);
  std::string u_ = kPodU;
  std::replace(u_.begin(), u_.end(), '-', '_');
  auto dir = root / "kubepods.slice/kubepods-burstable.slice" /
             ("kubepods-burstable-pod" + u_ + ".slice") /
             ("cri-containerd-" + std::string(kC1) + ".scope");
  auto path = r.pathForId(inode(dir));
  ASSERT_TRUE(path.has_value());
  auto info = parseCgroupPath(*path);
  EXPECT_EQ(info.runtime, "containerd");
  EXPECT_EQ(info.container_id, kC1);
  EXPECT_EQ(info.pod_uid, kPodU);
}

TEST(CgroupResolver, UnknownIdIsRememberedAsGone) {
  auto dir = std::filesystem::temp_directory_path() / ("kscribe-cg-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir / "a/b");
  CgroupResolver r(dir);
  auto b = inode(dir / "a/b");
  EXPECT_EQ(r.pathForId(b), "/a/b");
  // A cgroup created after the first walk is found by the next one.
  std::filesystem::create_directories(dir / "c");
  EXPECT_EQ(r.pathForId(inode(dir / "c")), "/c");
  EXPECT_EQ(r.walks(), 2u);
  // An id no directory has: one more walk, then remembered without walking again.
  std::uint64_t missing = 0xdead0000beefULL;
  EXPECT_FALSE(r.pathForId(missing).has_value());
  EXPECT_FALSE(r.pathForId(missing).has_value());
  EXPECT_EQ(r.walks(), 3u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kscribe
