#include "agent/bpf_loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <vector>

#include "attribution.skel.h"
#include "proxy/log.h"

namespace kscribe {
namespace {

// libbpf logs through one global callback: keep its lines at debug level and remember the last
// warnings of the load in progress on this thread, so a failure can quote the verifier.
thread_local std::string* t_capture = nullptr;

int libbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  char buf[1024];
  int n = std::vsnprintf(buf, sizeof buf, format, args);
  if (n <= 0) return 0;
  std::string_view line(buf, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1));
  while (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (t_capture != nullptr && level <= LIBBPF_INFO) {
    t_capture->append(line).push_back('\n');
    if (t_capture->size() > 64 * 1024) t_capture->erase(0, t_capture->size() - 32 * 1024);
  }
  log::debug(std::string("libbpf: ").append(line));
  return 0;
}

void installPrint() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(libbpfPrint); });
}

// The last verifier or libbpf line worth quoting (skips the generic summary lines).
std::string lastUsefulLine(const std::string& log) {
  std::istringstream in(log);
  std::string line, best;
  while (std::getline(in, line)) {
    if (line.empty() || line.find("-- END PROG LOAD LOG --") != std::string::npos ||
        line.find("processed ") == 0 || line.find("failed to load") != std::string::npos)
      continue;
    best = line;
  }
  return best;
}

std::string errnoText(int err) {
  return std::string(strerrordesc_np(err) ? strerrordesc_np(err) : "unknown") + " (" +
         (strerrorname_np(err) ? strerrorname_np(err) : std::to_string(err)) + ")";
}

std::string loadMeaning(int err) {
  switch (err) {
    case EPERM:
      return "the kernel refuses this program type or one of its helpers (kernel lockdown, or "
             "missing CAP_BPF/CAP_PERFMON); this is not a memlock limit, whatever libbpf suggests";
    case EACCES:
      return "the verifier rejected the program";
    case EINVAL:
    case EOPNOTSUPP:
      return "the kernel lacks a program, map or helper this program needs (sockops, "
             "sk_storage, bpf_get_netns_cookie; Linux 5.15+)";
    case ENOENT:
    case ESRCH:
      return "a kernel type the program reads (CO-RE) is missing: kernel BTF absent or different";
    case ENOMEM:
    case E2BIG:
      return "the kernel could not allocate the maps (memory cgroup limit?)";
    default:
      return "see the libbpf debug log (log.level: debug)";
  }
}

std::string attachMeaning(int err) {
  switch (err) {
    case EPERM:
    case EACCES:
      return "attaching to a cgroup needs CAP_NET_ADMIN (and CAP_BPF) in the initial user "
             "namespace";
    case EINVAL:
    case EOPNOTSUPP:
      return "this kernel cannot attach sockops as a bpf_link (Linux 5.7+ needed)";
    case ENOENT:
    case ENOTDIR:
      return "the cgroup directory does not exist";
    default:
      return "unexpected";
  }
}

std::string unescapeMountField(const std::string& s) {
  // /proc/mounts escapes space, tab, newline and backslash as \ooo.
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (std::size_t k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

bool hasCap(std::uint64_t caps, int cap) { return (caps >> cap) & 1U; }

}  // namespace

std::filesystem::path findCgroup2Mount(const std::filesystem::path& proc_mounts) {
  std::ifstream in(proc_mounts);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string source, target, type;
    if (fields >> source >> target >> type && type == "cgroup2") return unescapeMountField(target);
  }
  return {};
}

std::string bpfPreflight(const std::filesystem::path& btf) {
  std::error_code ec;
  if (!std::filesystem::exists(btf, ec))
    return "kernel BTF not found at " + btf.string() +
           " (the kernel needs CONFIG_DEBUG_INFO_BTF=y for CO-RE)";
  std::ifstream status("/proc/self/status");
  std::string line;
  std::uint64_t eff = 0;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) == 0) eff = std::stoull(line.substr(7), nullptr, 16);
  }
  constexpr int kCapNetAdmin = 12, kCapSysAdmin = 21, kCapPerfmon = 38, kCapBpf = 39;
  bool ok = hasCap(eff, kCapSysAdmin) ||
            (hasCap(eff, kCapBpf) && hasCap(eff, kCapPerfmon) && hasCap(eff, kCapNetAdmin));
  if (!ok)
    return "not root: attribution needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or "
           "CAP_SYS_ADMIN); this process runs as uid " +
           std::to_string(geteuid()) + " without them";
  if (findCgroup2Mount().empty())
    return "no cgroup v2 hierarchy in /proc/mounts (sockops attaches to a cgroup v2 root)";
  return "";
}

void BpfLoader::SkelDeleter::operator()(attribution_bpf* s) const { attribution_bpf__destroy(s); }
void BpfLoader::LinkDeleter::operator()(bpf_link* l) const { bpf_link__destroy(l); }

void BpfLoader::loadWith(bool read_task, bool netns_cookie) {
  skel_.reset(attribution_bpf__open());
  if (!skel_) {
    int err = errno;
    throw BpfError("attribution: opening the BPF object failed: " + errnoText(err), err);
  }
  skel_->rodata->read_task = read_task;
  skel_->rodata->netns_cookie = netns_cookie;
  int rc = attribution_bpf__load(skel_.get());
  if (rc != 0) {
    skel_.reset();
    int err = rc < 0 ? -rc : errno;
    throw BpfError("attribution: loading BPF program kscribe_sockops (sockops) failed: " +
                       errnoText(err) + ": " + loadMeaning(err),
                   err);
  }
  read_task_ = read_task;
  netns_cookie_ = netns_cookie;
}

BpfLoader::BpfLoader(Options options) : cgroup_(std::move(options.cgroup)) {
  installPrint();
  if (cgroup_.empty()) cgroup_ = findCgroup2Mount();
  if (cgroup_.empty())
    throw BpfError("attribution: no cgroup v2 mount in /proc/mounts to attach to", ENOENT);

  // Configure: prefer the full record; degrade if this kernel refuses the task walk (start time,
  // netns inode) or the netns cookie, rather than failing outright.
  std::string capture;
  t_capture = &capture;
  std::optional<BpfError> first;
  const bool variants[][2] = {{true, true}, {false, true}, {false, false}};
  for (const auto& v : variants) {
    capture.clear();
    try {
      loadWith(v[0], v[1]);
      break;
    } catch (const BpfError& e) {
      std::string detail = lastUsefulLine(capture);
      if (!first)
        first.emplace(std::string(e.what()) + (detail.empty() ? "" : " [" + detail + "]"),
                      e.error());
      if (e.error() == EPERM && !v[0]) break;  // the program type itself is refused
    }
  }
  t_capture = nullptr;
  if (!skel_) throw *first;
  if (first)
    log::warn(std::string("attribution: degraded BPF load (") +
              (read_task_ ? "" : "no process start time or netns inode from the task; ") +
              (netns_cookie_ ? "" : "no netns cookie; ") + "first attempt: " + first->what() + ")");

  int cg = ::open(cgroup_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) {
    int err = errno;
    throw BpfError("attribution: opening cgroup " + cgroup_.string() +
                       " failed: " + errnoText(err) + ": " + attachMeaning(err),
                   err);
  }
  // libbpf 1.1: attribution_bpf__attach() returns 0 but skips cgroup programs; attach ourselves.
  bpf_link* link = bpf_program__attach_cgroup(skel_->progs.kscribe_sockops, cg);
  int err = link == nullptr ? errno : 0;
  ::close(cg);
  if (link == nullptr)
    throw BpfError("attribution: attaching kscribe_sockops (sockops) to cgroup " +
                       cgroup_.string() + " failed: " + errnoText(err) + ": " + attachMeaning(err),
                   err);
  link_.reset(link);
  owners_fd_ = bpf_map__fd(skel_->maps.owners);
  ports_fd_ = bpf_map__fd(skel_->maps.ports);
  counters_fd_ = bpf_map__fd(skel_->maps.counters);
}

BpfLoader::~BpfLoader() {
  link_.reset();  // detach before the program and maps go
  skel_.reset();
}

int BpfLoader::programFd() const { return bpf_program__fd(skel_->progs.kscribe_sockops); }

void BpfLoader::addPort(std::uint16_t port) {
  std::uint8_t one = 1;
  if (bpf_map_update_elem(ports_fd_, &port, &one, BPF_ANY) != 0) {
    int err = errno;
    throw BpfError("attribution: registering proxy port " + std::to_string(port) +
                       " failed: " + errnoText(err) +
                       (err == E2BIG ? ": more than " + std::to_string(KSCRIBE_MAX_PORTS) + " ports"
                                     : std::string()),
                   err);
  }
}

void BpfLoader::removePort(std::uint16_t port) { bpf_map_delete_elem(ports_fd_, &port); }

std::optional<kscribe_owner> BpfLoader::lookup(int accepted_fd) const {
  kscribe_owner owner{};
  if (bpf_map_lookup_elem(owners_fd_, &accepted_fd, &owner) != 0) return std::nullopt;
  return owner;
}

BpfCounters BpfLoader::counters() const {
  BpfCounters total{};
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return total;
  std::vector<std::uint64_t> per_cpu(static_cast<std::size_t>(cpus));
  for (std::uint32_t i = 0; i < KSCRIBE_CNT_MAX; ++i) {
    if (bpf_map_lookup_elem(counters_fd_, &i, per_cpu.data()) != 0) continue;
    for (std::uint64_t v : per_cpu) total[i] += v;
  }
  return total;
}

BpfRunStats BpfLoader::runStats() const {
  bpf_prog_info info{};
  std::uint32_t len = sizeof info;
  BpfRunStats stats;
  if (bpf_obj_get_info_by_fd(programFd(), &info, &len) == 0) {
    stats.run_time_ns = info.run_time_ns;
    stats.run_cnt = info.run_cnt;
  }
  return stats;
}

}  // namespace kscribe
