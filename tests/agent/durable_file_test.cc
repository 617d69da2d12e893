#include "agent/durable_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/pki.h"

namespace kscribe::durable {
namespace {

namespace fs = std::filesystem;

fs::path tempDir() {
  std::string tmpl = (fs::temp_directory_path() / "kscribe-durable-XXXXXX").string();
  const char* made = ::mkdtemp(tmpl.data());
  if (made == nullptr) throw std::runtime_error("mkdtemp failed");
  return made;
}

// Which of the file's pages sit in the page cache (mincore over a shared mapping).
std::vector<bool> residentPages(const fs::path& p) {
  const std::size_t size = fs::file_size(p);
  const long page = ::sysconf(_SC_PAGESIZE);
  const int fd = ::open(p.c_str(), O_RDONLY);
  void* map = fd < 0 ? MAP_FAILED : ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (fd >= 0) ::close(fd);
  if (map == MAP_FAILED) {
    ADD_FAILURE() << "cannot map " << p;
    return {};
  }
  std::vector<unsigned char> vec((size + page - 1) / page);
  EXPECT_EQ(::mincore(map, size, vec.data()), 0);
  ::munmap(map, size);
  std::vector<bool> out;
  for (unsigned char v : vec) out.push_back((v & 1) != 0);
  return out;
}

// Synced whole pages leave the page cache; the partly filled last page stays for the next
// append; and the file holds every byte, in order, when read back from disk.
TEST(AppendFileTest, SyncedPagesLeaveThePageCacheAndTheFileStaysWhole) {
  const fs::path dir = tempDir();
  const fs::path path = dir / "s.jsonl";
  const long page = ::sysconf(_SC_PAGESIZE);
  AppendFile f;
  ASSERT_FALSE(f.open(path));
  const std::string a(static_cast<std::size_t>(page) * 8 + 100, 'a');
  ASSERT_FALSE(f.append(a));
  auto before = residentPages(path);
  ASSERT_EQ(before.size(), 9u);
  EXPECT_TRUE(before[0]) << "appended pages start in the page cache";

  ASSERT_FALSE(f.sync());
  auto after = residentPages(path);
  for (std::size_t i = 0; i < 8; ++i) EXPECT_FALSE(after[i]) << "page " << i;
  EXPECT_TRUE(after[8]) << "the partly filled last page stays";

  // The next sync drops from where the last one stopped, including that page once full.
  const std::string b(static_cast<std::size_t>(page) * 2, 'b');
  ASSERT_FALSE(f.append(b));
  ASSERT_FALSE(f.sync());
  after = residentPages(path);
  ASSERT_EQ(after.size(), 11u);
  for (std::size_t i = 0; i < 10; ++i) EXPECT_FALSE(after[i]) << "page " << i;
  EXPECT_TRUE(after[10]);

  f.close();
  EXPECT_EQ(pki::readFile(path), a + b);
  // Reopened, the file appends after what it holds.
  ASSERT_FALSE(f.open(path));
  ASSERT_FALSE(f.append("c\n"));
  ASSERT_FALSE(f.sync());
  f.close();
  EXPECT_EQ(pki::readFile(path), a + b + "c\n");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kscribe::durable
