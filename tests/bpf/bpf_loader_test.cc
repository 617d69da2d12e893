// Loader pieces that need no root: finding the cgroup v2 mount.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/bpf_loader.h"

namespace kscribe {
namespace {

TEST(BpfLoader, FindsCgroup2MountInAMountsFile) {
  auto dir =
      std::filesystem::temp_directory_path() / ("kscribe-mounts-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "mounts") << "proc /proc proc rw 0 0\n"
                                   "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
                                   "cgroup2 /sys/fs/cgroup/un\\040ified cgroup2 rw 0 0\n";
  EXPECT_EQ(findCgroup2Mount(dir / "mounts"), "/sys/fs/cgroup/un ified");
  std::ofstream(dir / "none") << "proc /proc proc rw 0 0\n";
  EXPECT_EQ(findCgroup2Mount(dir / "none"), "");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kscribe
