#include "agent/attribution.h"

#include <unistd.h>

#include <array>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "agent/bpf_loader.h"
#include "agent/metrics.h"
#include "proxy/log.h"

namespace kscribe {
namespace {

constexpr std::size_t kMaxCmdline = 4096;  // enough to identify a process; bounds the record

std::string readSmallFile(const std::filesystem::path& p, std::size_t cap) {
  std::ifstream in(p, std::ios::binary);
  std::string out(cap, '\0');
  in.read(out.data(), static_cast<std::streamsize>(cap));
  out.resize(static_cast<std::size_t>(in.gcount()));
  return out;
}

bool credentialFlag(std::string_view flag) {
  static constexpr std::array<std::string_view, 6> kWords = {"token",  "password", "passwd",
                                                             "secret", "key",      "credential"};
  for (auto w : kWords)
    if (flag.find(w) != std::string_view::npos) return true;
  return false;
}

std::uint64_t nsPerTick() {
  static const std::uint64_t ns =
      1'000'000'000ULL / static_cast<std::uint64_t>(sysconf(_SC_CLK_TCK));
  return ns;
}

}  // namespace

std::string redactCmdline(const std::string& joined_args) {
  std::istringstream in(joined_args);
  std::string word, out;
  bool redact_next = false;
  while (in >> word) {
    if (!out.empty()) out.push_back(' ');
    if (redact_next) {
      out += "[REDACTED]";
      redact_next = false;
      continue;
    }
    if (word.rfind("-", 0) == 0) {
      auto eq = word.find('=');
      std::string flag = word.substr(0, eq);
      for (auto& c : flag) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (credentialFlag(flag)) {
        if (eq == std::string::npos) {
          redact_next = true;
          out += word;
        } else {
          out += word.substr(0, eq + 1) + "[REDACTED]";
        }
        continue;
      }
    }
    out += word;
  }
  return out;
}

std::optional<ProcessInfo> readProcess(const std::filesystem::path& proc_root, std::uint32_t tgid) {
  auto dir = proc_root / std::to_string(tgid);
  std::string stat = readSmallFile(dir / "stat", 4096);
  if (stat.empty()) return std::nullopt;
  ProcessInfo info;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ')'.
  auto open = stat.find('(');
  auto close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return std::nullopt;
  info.comm = stat.substr(open + 1, close - open - 1);
  std::istringstream rest(stat.substr(close + 1));
  std::string field;
  // Fields after comm start at 3 (state); ppid is 4, starttime is 22.
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 4) info.ppid = static_cast<std::uint32_t>(std::stoul(field));
    if (i == 22) info.start_time = std::stoull(field);
  }
  std::error_code ec;
  info.exe = std::filesystem::read_symlink(dir / "exe", ec).string();
  if (ec) info.exe.clear();
  std::string raw = readSmallFile(dir / "cmdline", kMaxCmdline);
  while (!raw.empty() && raw.back() == '\0') raw.pop_back();
  for (auto& c : raw)
    if (c == '\0') c = ' ';
  info.cmdline = redactCmdline(raw);
  return info;
}

proxy::Attribution enrich(const kscribe_owner& owner, const std::filesystem::path& proc_root,
                          CgroupResolver& cgroups) {
  proxy::Attribution a;
  a.status = proxy::Attribution::Status::kAttributed;
  a.tgid = owner.tgid;
  a.tid = owner.tid;
  a.uid = owner.uid;
  a.gid = owner.gid;
  a.comm = std::string(bpf::commOf(owner));
  a.cgroup_id = owner.cgroup_id;
  a.netns_cookie = owner.netns_cookie;
  const bool kernel_start = (owner.flags & KSCRIBE_OWNER_HAVE_START) != 0;
  // The kernel's start_boottime converted as /proc does it (nsec_to_clock_t).
  const std::uint64_t recorded_start = kernel_start ? owner.start_boottime_ns / nsPerTick() : 0;
  if (kernel_start) a.start_time = recorded_start;

  auto proc = readProcess(proc_root, owner.tgid);
  bool same = false;
  if (proc) {
    // (tgid, start time) is the process identity, at /proc's clock-tick resolution (10 ms): a pid
    // reused within the tick its previous owner started in would pass, which needs the pid space
    // to wrap within 10 ms. Without the kernel's start time, a process that started after the
    // connect cannot be the one that connected.
    same = kernel_start ? proc->start_time == recorded_start
                        : proc->start_time * nsPerTick() <= owner.connect_boot_ns;
  }
  if (same) {
    a.exe = std::move(proc->exe);
    a.cmdline = std::move(proc->cmdline);
    a.ppid = proc->ppid;
    a.start_time = proc->start_time;
  } else {
    a.process_exited = true;  // gone, or its pid now names another process: kernel fields only
  }

  if (auto path = cgroups.pathForId(owner.cgroup_id)) {
    a.cgroup_path = *path;
    ContainerInfo c = parseCgroupPath(*path);
    a.container_runtime = std::move(c.runtime);
    a.container_id = std::move(c.container_id);
    a.pod_uid = std::move(c.pod_uid);
  }
  return a;
}

BpfAttribution::BpfAttribution(const BpfLoader& loader, std::filesystem::path proc_root,
                               std::filesystem::path cgroup_root)
    : loader_(loader), proc_root_(std::move(proc_root)), cgroups_(std::move(cgroup_root)) {}

std::shared_ptr<const proxy::Attribution> BpfAttribution::lookup(int accepted_fd) {
  auto owner = loader_.lookup(accepted_fd);
  if (!owner) {
    metrics::get().attribution_miss.inc();
    log::debug("attribution: fd " + std::to_string(accepted_fd) + " unattributed");
    auto a = std::make_shared<proxy::Attribution>();
    a->status = proxy::Attribution::Status::kUnattributed;  // never guessed
    return a;
  }
  metrics::get().attribution_hit.inc();
  auto a = std::make_shared<proxy::Attribution>(enrich(*owner, proc_root_, cgroups_));
  if (log::enabled(log::Level::kDebug)) {
    // No cmdline here: even redacted, arguments are more than a log line needs.
    log::debug("attribution: fd " + std::to_string(accepted_fd) +
               " tgid=" + std::to_string(a->tgid) + " tid=" + std::to_string(a->tid) +
               " uid=" + std::to_string(a->uid) + " ppid=" + std::to_string(a->ppid) +
               " comm=" + a->comm + " exe=" + a->exe + " cgroup=" + a->cgroup_path +
               (a->process_exited ? " process_exited" : ""));
  }
  return a;
}

std::shared_ptr<const proxy::Attribution> UnavailableAttribution::lookup(int) {
  metrics::get().attribution_unavailable.inc();
  static const auto kUnavailable = std::make_shared<const proxy::Attribution>();
  return kUnavailable;
}

void AttributionRuntime::trackPort(std::uint16_t port) {
  if (loader && port != 0) loader->addPort(port);
}

AttributionRuntime::AttributionRuntime() = default;
AttributionRuntime::~AttributionRuntime() {
  source.reset();  // the source refers to the loader
  loader.reset();
}
AttributionRuntime::AttributionRuntime(AttributionRuntime&&) noexcept = default;
AttributionRuntime& AttributionRuntime::operator=(AttributionRuntime&&) noexcept = default;

AttributionRuntime startAttribution(const std::string& mode,
                                    const std::vector<std::uint16_t>& ports,
                                    const std::filesystem::path& btf) {
  AttributionRuntime rt;
  if (mode == "off") {
    log::info("attribution: off (config attribution: off); connections are marked unavailable");
    rt.source = std::make_unique<UnavailableAttribution>();
    return rt;
  }
  const bool required = mode == "required";
  auto unavailable = [&](const std::string& why) {
    if (required)
      throw std::runtime_error("attribution: required (config attribution: required) but " + why);
    log::warn(
        "attribution: unavailable, every connection is marked so (config attribution: "
        "optional): " +
        why);
    rt.loader.reset();
    rt.source = std::make_unique<UnavailableAttribution>();
    return std::move(rt);
  };
  if (std::string why = bpfPreflight(btf); !why.empty()) return unavailable(why);
  try {
    rt.loader = std::make_unique<BpfLoader>();
    for (auto port : ports) rt.trackPort(port);  // 0: bound later, see trackPort()
  } catch (const BpfError& e) {
    return unavailable(e.what());
  }
  log::info("attribution: sockops attached to cgroup " + rt.loader->cgroup().string() +
            (rt.loader->readsTask() ? "" : " (no process start time from the kernel)") +
            (rt.loader->hasNetnsCookie() ? "" : " (no netns cookie)"));
  rt.source = std::make_unique<BpfAttribution>(*rt.loader, "/proc", rt.loader->cgroup());
  return rt;
}

}  // namespace kscribe
