// Loads the real attribution program this build generated, attaches it to the cgroup v2 root and
// checks the kernel's record of a loopback connection. Needs root.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "agent/bpf_loader.h"

namespace kscribe {
namespace {

#define REQUIRE_ROOT()                                                                  \
  do {                                                                                  \
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads and attaches a BPF program"; \
  } while (0)

int listenLoopback(std::uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(fd, 16), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int connectLoopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

std::uint64_t ownCgroupInode() {
  std::ifstream in("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  struct stat st {};
  EXPECT_EQ(::stat((findCgroup2Mount().string() + path).c_str(), &st), 0);
  return st.st_ino;
}

TEST(BpfLoaderRoot, LoadsAttachesAndRecordsALoopbackConnection) {
  REQUIRE_ROOT();
  BpfLoader loader;
  EXPECT_GT(loader.programFd(), 0);
  EXPECT_EQ(loader.cgroup(), findCgroup2Mount());

  std::uint16_t port = 0;
  int lfd = listenLoopback(&port);
  loader.addPort(port);
  int cfd = connectLoopback(port);
  int afd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(afd, 0);

  auto owner = loader.lookup(afd);
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->tgid, static_cast<std::uint32_t>(getpid()));
  EXPECT_EQ(owner->tid, static_cast<std::uint32_t>(gettid()));
  EXPECT_EQ(owner->uid, 0u);
  EXPECT_EQ(owner->abi_version, static_cast<std::uint32_t>(KSCRIBE_ABI_VERSION));
  EXPECT_EQ(owner->cgroup_id, ownCgroupInode());
  std::string comm;
  std::getline(std::ifstream("/proc/self/comm"), comm);
  EXPECT_EQ(bpf::commOf(*owner), comm);
  EXPECT_NE(owner->connect_boot_ns, 0u);
  // The client socket is not a proxy-port accept: nothing recorded on it.
  EXPECT_FALSE(loader.lookup(cfd).has_value());

  auto c = loader.counters();
  EXPECT_GE(c[KSCRIBE_CNT_CONNECT], 1u);
  EXPECT_GE(c[KSCRIBE_CNT_JOINED], 1u);
  ::close(afd);
  ::close(cfd);

  // A port no longer registered is not tracked.
  loader.removePort(port);
  cfd = connectLoopback(port);
  afd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  EXPECT_FALSE(loader.lookup(afd).has_value());
  ::close(afd);
  ::close(cfd);
  ::close(lfd);
}

TEST(BpfLoaderRoot, ConnectionOpenedBeforeAttachIsNotRecorded) {
  REQUIRE_ROOT();
  std::uint16_t port = 0;
  int lfd = listenLoopback(&port);
  int cfd = connectLoopback(port);  // before the program exists
  BpfLoader loader;
  loader.addPort(port);
  int afd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  EXPECT_FALSE(loader.lookup(afd).has_value());
  ::close(afd);
  ::close(cfd);
  ::close(lfd);
}

TEST(BpfLoaderRoot, DetachesOnDestruction) {
  REQUIRE_ROOT();
  std::uint16_t port = 0;
  int lfd = listenLoopback(&port);
  int owners_fd = -1;
  {
    BpfLoader loader;
    loader.addPort(port);
    owners_fd = ::dup(loader.ownersFd());  // keeps the map, not the program or the link
  }
  int cfd = connectLoopback(port);
  int afd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  std::uint8_t rec[sizeof(kscribe_owner)];
  EXPECT_NE(bpf_map_lookup_elem(owners_fd, &afd, rec), 0) << "program still attached";
  ::close(owners_fd);
  ::close(afd);
  ::close(cfd);
  ::close(lfd);
}

}  // namespace
}  // namespace kscribe
