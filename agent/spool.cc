#include "agent/spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "proxy/log.h"

namespace kscribe {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kUploadedSuffix = ".uploaded";
constexpr const char* kEntrySchema = "kscribe.spool-entry/v1";  // schemas/spool-entry.schema.json

bool safeName(const std::string& s) {
  if (s.empty() || s.size() > 200 || s[0] == '.') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

void fsyncPath(const fs::path& p, bool dir) {
  int fd = ::open(p.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Hard link when possible (same file system: no copy, no extra space); copy and fsync otherwise.
void linkOrCopy(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_hard_link(from, to, ec);
  if (!ec) return;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  fsyncPath(to, false);
}

}  // namespace

std::string KeyLayout::key(const std::string& agent, std::chrono::system_clock::time_point started,
                           const std::string& file_name) const {
  std::time_t t = std::chrono::system_clock::to_time_t(started);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char date[16];
  std::strftime(date, sizeof date, "%Y-%m-%d", &tm);
  std::string k;
  for (const std::string& part : {prefix, cluster, node, agent, std::string(date), file_name}) {
    if (part.empty()) continue;
    if (!k.empty()) k += "/";
    k += part;
  }
  return k;
}

std::string KeyLayout::auditHeadKey() const {
  std::string k;
  for (const std::string& part : {prefix, cluster, node}) {
    if (part.empty()) continue;
    k += part + "/";
  }
  return k + "audit/head.json";
}

Spool::Spool(fs::path dir, std::uint64_t max_bytes, std::string on_full, KeyLayout layout)
    : dir_(std::move(dir)),
      max_bytes_(max_bytes),
      on_full_(std::move(on_full)),
      layout_(std::move(layout)) {
  fs::create_directories(dir_ / "pending");
  // Half-assembled entries from a crash: their sources are still in the sessions directory.
  std::error_code ec;
  fs::remove_all(dir_ / "incoming", ec);
  fs::create_directories(dir_ / "incoming");
  fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::replace, ec);
  for (const auto& e : pending()) {
    auto n = std::strtoull(e.id.c_str(), nullptr, 10);
    seq_ = std::max<std::uint64_t>(seq_, n);
  }
  bytes_ = scanBytes();
  std::ifstream(dir_ / "dropped") >> dropped_;
  updateAcceptingLocked();
}

void Spool::updateAcceptingLocked() {
  const bool accepting = on_full_ != "reject" || bytes_ < max_bytes_;
  if (accepting_.exchange(accepting) == accepting) return;
  if (accepting) {
    log::info("spool: " + std::to_string(bytes_) + " bytes, below the bound (" +
              std::to_string(max_bytes_) + "); accepting new requests again");
  } else {
    log::warn("spool: " + std::to_string(bytes_) + " bytes reached the bound (" +
              std::to_string(max_bytes_) + "); refusing new requests until uploads catch up");
  }
}

std::uint64_t Spool::scanBytes() const {
  std::uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir_ / "pending", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

std::vector<SpoolEntry> Spool::pending() const {
  std::vector<SpoolEntry> out;
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(dir_ / "pending", ec)) {
    if (!d.is_directory()) continue;
    std::ifstream in(d.path() / "entry.json");
    if (!in) continue;
    json j = json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      log::warn("spool: ignoring unreadable entry " + d.path().string());
      continue;
    }
    SpoolEntry e;
    e.id = d.path().filename().string();
    e.dir = d.path();
    e.session_id = j.value("session_id", "");
    e.agent = j.value("agent", "");
    for (const auto& f : j.value("files", json::array())) {
      SpoolFile sf{f.value("name", ""), f.value("key", ""), false};
      sf.uploaded = fs::exists(e.dir / (sf.name + kUploadedSuffix));
      e.files.push_back(sf);
    }
    // Everything the entry holds on disk (entry.json and markers too), as scanBytes counts it.
    std::error_code sec;
    for (const auto& f : fs::directory_iterator(e.dir, sec)) {
      if (f.is_regular_file(sec)) e.bytes += f.file_size(sec);
    }
    out.push_back(std::move(e));
  }
  // <seq> is zero-padded, so name order is arrival order.
  std::sort(out.begin(), out.end(),
            [](const SpoolEntry& a, const SpoolEntry& b) { return a.id < b.id; });
  return out;
}

bool Spool::add(const ClosedSession& s, std::string* error) {
  auto fail = [error](std::string m) {
    if (error) *error = std::move(m);
    return false;
  };
  if (!safeName(s.session_id)) return fail("session id \"" + s.session_id + "\" is not file-safe");
  if (!safeName(s.agent)) return fail("agent name \"" + s.agent + "\" is not file-safe");
  std::error_code ec;
  std::uint64_t incoming = fs::file_size(s.data_file, ec);
  if (ec) return fail("cannot read " + s.data_file.string() + ": " + ec.message());
  if (!s.manifest_file.empty()) {
    incoming += fs::file_size(s.manifest_file, ec);
    if (ec) return fail("cannot read " + s.manifest_file.string() + ": " + ec.message());
  }

  std::lock_guard lock(mu_);
  if (on_full_ == "drop_oldest") dropOldestFor(incoming);

  char seq[32];
  std::snprintf(seq, sizeof seq, "%020llu", static_cast<unsigned long long>(++seq_));
  const std::string id = std::string(seq) + "-" + s.session_id;
  const fs::path tmp = dir_ / "incoming" / id;
  try {
    fs::create_directories(tmp);
    json files = json::array();
    const std::string data_name = s.session_id + ".jsonl";
    linkOrCopy(s.data_file, tmp / data_name);
    files.push_back({{"name", data_name}, {"key", layout_.key(s.agent, s.started, data_name)}});
    if (!s.manifest_file.empty()) {
      const std::string m = s.session_id + ".manifest.json";
      linkOrCopy(s.manifest_file, tmp / m);
      files.push_back({{"name", m}, {"key", layout_.key(s.agent, s.started, m)}});
    }
    json entry{{"schema", kEntrySchema},
               {"session_id", s.session_id},
               {"agent", s.agent},
               {"started",
                std::chrono::duration_cast<std::chrono::milliseconds>(s.started.time_since_epoch())
                    .count()},
               {"files", files}};
    {
      std::ofstream out(tmp / "entry.json");
      out << entry.dump() << "\n";
      if (!out) throw std::runtime_error("cannot write entry.json");
    }
    fsyncPath(tmp / "entry.json", false);
    // Counted as pending() and scanBytes() count it, so remove() subtracts what add() added.
    incoming += fs::file_size(tmp / "entry.json");
    fsyncPath(tmp, true);
    fs::rename(tmp, dir_ / "pending" / id);
    fsyncPath(dir_ / "pending", true);
  } catch (const std::exception& e) {
    fs::remove_all(tmp, ec);
    return fail(std::string("cannot spool session: ") + e.what());
  }
  bytes_ += incoming;
  updateAcceptingLocked();
  return true;
}

void Spool::dropOldestFor(std::uint64_t incoming) {
  if (bytes_ + incoming <= max_bytes_) return;
  for (const auto& e : pending()) {
    if (bytes_ + incoming <= max_bytes_) break;
    std::error_code ec;
    fs::remove_all(e.dir, ec);
    bytes_ = bytes_ > e.bytes ? bytes_ - e.bytes : 0;
    ++dropped_;
    // The count survives restarts: a drop is a loss an operator must be able to see later.
    std::ofstream(dir_ / "dropped", std::ios::trunc) << dropped_ << "\n";
    log::warn("spool: full (on_spool_full: drop_oldest): dropped session " + e.session_id +
              " of agent " + e.agent + " before upload");
  }
}

void Spool::markUploaded(const SpoolEntry& entry, const std::string& file) {
  const fs::path marker = entry.dir / (file + kUploadedSuffix);
  std::ofstream(marker).flush();
  fsyncPath(entry.dir, true);
}

void Spool::remove(const SpoolEntry& entry) {
  std::lock_guard lock(mu_);
  std::error_code ec;
  fs::remove_all(entry.dir, ec);
  bytes_ = bytes_ > entry.bytes ? bytes_ - entry.bytes : 0;
  updateAcceptingLocked();
}

std::uint64_t Spool::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

std::uint64_t Spool::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

}  // namespace kscribe
