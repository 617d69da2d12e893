#include "agent/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

#include "agent/bpf_abi.h"

namespace kscribe::metrics {

namespace {

bool validName(std::string_view n, bool allow_colon) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// FNV-1a over the values, with a separator so ("ab","c") and ("a","bc") differ.
std::uint64_t hashValues(std::span<const std::string_view> values) {
  std::uint64_t h = 1469598103934665603ULL;
  for (auto v : values) {
    for (unsigned char c : v) h = (h ^ c) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
  }
  return h;
}

bool sameValues(const std::vector<std::string>& a, std::span<const std::string_view> b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

void escapeHelp(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

// name{a="x",b="y"[,extra]} value\n
void appendSeries(std::string& out, std::string_view name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, std::string_view extra_label = {},
                  std::string_view extra_value = {}) {
  out += name;
  if (!names.empty() || !extra_label.empty()) {
    out += '{';
    bool first = true;
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (!first) out += ',';
      first = false;
      out += names[i];
      out += "=\"";
      escapeLabelValue(out, values[i]);
      out += '"';
    }
    if (!extra_label.empty()) {
      if (!first) out += ',';
      out += extra_label;
      out += "=\"";
      escapeLabelValue(out, extra_value);
      out += '"';
    }
    out += '}';
  }
  out += ' ';
}

void appendUint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

const char* typeName(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

void escapeLabelValue(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

void formatValue(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(v));
    out.append(buf, r.ptr);
  } else {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
}

// ---- Histogram

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds), counts_(new std::atomic<std::uint64_t>[bounds.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::observe(double value) {
  // Buckets are few (<20): a linear scan beats a binary search's branches.
  std::size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = total;
  }
  s.count = total;  // derived from the buckets, so _count always equals the +Inf bucket
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

// ---- Families

FamilyBase::FamilyBase(std::string name, std::string help, Type type,
                       std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {
  if (!validName(name_, true)) throw std::logic_error("bad metric name: " + name_);
  for (const auto& l : label_names_) {
    if (!validName(l, false) || l.starts_with("__") || (type_ == Type::kHistogram && l == "le"))
      throw std::logic_error("bad label name for " + name_ + ": " + l);
  }
}

void FamilyBase::render(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  escapeHelp(out, help_);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += typeName(type_);
  out += '\n';
  renderSamples(out);
}

template <typename M>
Family<M>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                  std::vector<double> bounds)
    : FamilyBase(std::move(name), std::move(help),
                 std::is_same_v<M, Counter> ? Type::kCounter
                 : std::is_same_v<M, Gauge> ? Type::kGauge
                                            : Type::kHistogram,
                 std::move(label_names)),
      bounds_(std::move(bounds)) {
  if constexpr (std::is_same_v<M, Histogram>) {
    if (bounds_.empty() || !std::is_sorted(bounds_.begin(), bounds_.end()) ||
        std::adjacent_find(bounds_.begin(), bounds_.end()) != bounds_.end() ||
        std::isinf(bounds_.back()))
      throw std::logic_error("histogram " + name_ + ": buckets must be finite and ascending");
  }
}

template <typename M>
std::unique_ptr<M> Family<M>::make() const {
  if constexpr (std::is_same_v<M, Histogram>)
    return std::make_unique<M>(std::span<const double>(bounds_));
  else
    return std::make_unique<M>();
}

template <typename M>
M& Family<M>::labels(std::span<const std::string_view> values) {
  if (values.size() != label_names_.size())
    throw std::logic_error(name_ + ": expected " + std::to_string(label_names_.size()) +
                           " label values, got " + std::to_string(values.size()));
  const std::uint64_t h = hashValues(values);
  {
    std::shared_lock lock(mu_);
    auto [b, e] = index_.equal_range(h);
    for (auto it = b; it != e; ++it)
      if (sameValues(it->second->values, values)) return *it->second->metric;
  }
  std::unique_lock lock(mu_);
  auto [b, e] = index_.equal_range(h);
  for (auto it = b; it != e; ++it)
    if (sameValues(it->second->values, values)) return *it->second->metric;
  if (children_.size() >= kMaxSeriesPerFamily) {
    if (!overflow_) {
      auto c = std::make_unique<Child>();
      c->values.assign(label_names_.size(), "_overflow");
      c->metric = make();
      overflow_ = c.get();
      children_.push_back(std::move(c));
    }
    return *overflow_->metric;
  }
  auto c = std::make_unique<Child>();
  c->values.assign(values.begin(), values.end());
  c->metric = make();
  index_.emplace(h, c.get());
  M& m = *c->metric;
  children_.push_back(std::move(c));
  return m;
}

template <typename M>
std::size_t Family<M>::seriesCount() const {
  std::shared_lock lock(mu_);
  return children_.size();
}

template <typename M>
void Family<M>::renderSamples(std::string& out) const {
  std::vector<const Child*> sorted;
  {
    std::shared_lock lock(mu_);
    sorted.reserve(children_.size());
    for (const auto& c : children_) sorted.push_back(c.get());
  }
  // Children are never removed, so the pointers stay valid without the lock.
  std::sort(sorted.begin(), sorted.end(),
            [](const Child* a, const Child* b) { return a->values < b->values; });
  for (const Child* c : sorted) {
    if constexpr (std::is_same_v<M, Histogram>) {
      auto s = c->metric->snapshot();
      const std::string bucket = name_ + "_bucket";
      std::string le;
      for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        le.clear();
        if (i < bounds_.size())
          formatValue(le, bounds_[i]);
        else
          le = "+Inf";
        appendSeries(out, bucket, label_names_, c->values, "le", le);
        appendUint(out, s.cumulative[i]);
        out += '\n';
      }
      appendSeries(out, name_ + "_sum", label_names_, c->values);
      formatValue(out, s.sum);
      out += '\n';
      appendSeries(out, name_ + "_count", label_names_, c->values);
      appendUint(out, s.count);
      out += '\n';
    } else if constexpr (std::is_same_v<M, Counter>) {
      appendSeries(out, name_, label_names_, c->values);
      appendUint(out, c->metric->value());
      out += '\n';
    } else {
      appendSeries(out, name_, label_names_, c->values);
      char buf[24];
      auto r = std::to_chars(buf, buf + sizeof buf, c->metric->value());
      out.append(buf, r.ptr);
      out += '\n';
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

CallbackFamily::CallbackFamily(std::string name, std::string help, Type type,
                               std::vector<std::string> label_names)
    : FamilyBase(std::move(name), std::move(help), type, std::move(label_names)) {
  if (type == Type::kHistogram) throw std::logic_error(name_ + ": callback histograms unsupported");
}

void CallbackFamily::setSource(Source source) {
  std::lock_guard lock(mu_);
  source_ = std::move(source);
}

void CallbackFamily::setValue(std::function<double()> read) {
  if (!read) return setSource({});
  setSource([read = std::move(read)] { return std::vector<Sample>{{{}, read()}}; });
}

void CallbackFamily::renderSamples(std::string& out) const {
  std::vector<Sample> samples;
  {
    std::lock_guard lock(mu_);
    if (source_) samples = source_();
  }
  std::sort(samples.begin(), samples.end(),
            [](const Sample& a, const Sample& b) { return a.label_values < b.label_values; });
  for (const auto& s : samples) {
    if (s.label_values.size() != label_names_.size()) continue;  // a bad source: skip, not crash
    appendSeries(out, name_, label_names_, s.label_values);
    formatValue(out, s.value);
    out += '\n';
  }
}

// ---- Registry

template <typename F>
F& Registry::add(std::unique_ptr<F> family) {
  std::lock_guard lock(mu_);
  for (const auto& f : families_)
    if (f->name() == family->name())
      throw std::logic_error("metric registered twice: " + family->name());
  F& ref = *family;
  families_.push_back(std::move(family));
  return ref;
}

Family<Counter>& Registry::counter(std::string name, std::string help,
                                   std::vector<std::string> label_names) {
  return add(
      std::make_unique<Family<Counter>>(std::move(name), std::move(help), std::move(label_names)));
}

Family<Gauge>& Registry::gauge(std::string name, std::string help,
                               std::vector<std::string> label_names) {
  return add(
      std::make_unique<Family<Gauge>>(std::move(name), std::move(help), std::move(label_names)));
}

Family<Histogram>& Registry::histogram(std::string name, std::string help,
                                       std::vector<std::string> label_names,
                                       std::vector<double> bounds) {
  return add(std::make_unique<Family<Histogram>>(std::move(name), std::move(help),
                                                 std::move(label_names), std::move(bounds)));
}

CallbackFamily& Registry::callback(std::string name, std::string help, Type type,
                                   std::vector<std::string> label_names) {
  return add(std::make_unique<CallbackFamily>(std::move(name), std::move(help), type,
                                              std::move(label_names)));
}

std::string Registry::render() const {
  std::vector<const FamilyBase*> families;
  {
    std::lock_guard lock(mu_);
    for (const auto& f : families_) families.push_back(f.get());
  }
  std::string out;
  out.reserve(8192);
  for (const auto* f : families) f->render(out);
  return out;
}

// ---- The kscribe metrics

KscribeMetrics::KscribeMetrics(Registry& r)
    : requests(r.counter("kscribe_requests_total",
                         "API requests handled, by agent, risk tier and response status "
                         "(\"error\": failed before a response).",
                         {"agent", "tier", "status"})),
      request_duration(r.histogram(
          "kscribe_request_duration_seconds",
          "Time from request head to the end of the response (until the upgrade for exec/attach).",
          {"tier"}, std::vector<double>(kLatencyBuckets.begin(), kLatencyBuckets.end()))),
      proxied_bytes(r.counter("kscribe_proxied_bytes_total",
                              "Body bytes relayed, by direction (request: agent to API server).",
                              {"direction"})),
      proxy_refusals(r.counter("kscribe_proxy_refusals_total",
                               "Requests refused before forwarding, by the status returned.",
                               {"status"})),
      connections_open(r.callback("kscribe_connections_open", "Agent connections currently open.",
                                  Type::kGauge)),
      identity_rejections(r.counter("kscribe_identity_rejections_total",
                                    "Connections or requests whose credential did not match the "
                                    "workload, by claimed agent and reason.",
                                    {"agent", "reason"})),
      attribution(r.counter("kscribe_attribution_total",
                            "Accepted connections by attribution result (hit: the kernel recorded "
                            "the owner; miss: it did not; unavailable: attribution off).",
                            {"result"})),
      attribution_hit(attribution.labels({"hit"})),
      attribution_miss(attribution.labels({"miss"})),
      attribution_unavailable(attribution.labels({"unavailable"})),
      bpf_drops(r.callback("kscribe_bpf_drops_total",
                           "Connections the BPF program could not attribute, by reason (per-CPU "
                           "counters, summed).",
                           Type::kCounter, {"reason"})),
      bpf_events(r.callback("kscribe_bpf_events_total",
                            "BPF program events: connects to the proxy, accepts, joins.",
                            Type::kCounter, {"event"})),
      bytes_recorded(
          r.counter("kscribe_bytes_recorded_total", "Bytes appended to session files.").get()),
      redactions(r.counter("kscribe_redactions_total",
                           "Values replaced by [REDACTED] or bodies withheld as unsafe.")
                     .get()),
      truncations(
          r.counter("kscribe_truncations_total", "Bodies cut at sessions.api.max_body_size.")
              .get()),
      sessions_open(r.gauge("kscribe_sessions_open", "Sessions currently open.").get()),
      sessions_closed(
          r.counter("kscribe_sessions_closed_total", "Sessions closed (idle timeout or shutdown).")
              .get()),
      record_failures(r.counter("kscribe_record_failures_total",
                                "Exchanges that could not be recorded (refused or forwarded per "
                                "sessions.on_record_failure).")
                          .get()),
      recorder_waits(r.counter("kscribe_recorder_waits_total",
                               "Times a request was held for a few milliseconds because the "
                               "recorder's writer was behind (on_record_failure: reject).")
                         .get()),
      uploads(r.counter("kscribe_uploads_total", "Object uploads to central storage, by result.",
                        {"result"})),
      upload_success(uploads.labels({"success"})),
      upload_failure(uploads.labels({"failure"})),
      upload_retries(
          r.counter("kscribe_upload_retries_total", "Upload attempts retried after an error.")
              .get()),
      spool_bytes(
          r.gauge("kscribe_spool_bytes", "Bytes waiting in the spool for upload confirmation.")
              .get()),
      spool_accepting(r.gauge("kscribe_spool_accepting",
                              "1 while new requests are accepted; 0 while the spool is full "
                              "under shipping.on_spool_full: reject (503).")
                          .get()) {
  spool_accepting.set(1);
}

Counter& KscribeMetrics::request(std::string_view agent, unsigned tier, unsigned status) {
  char t[12], s[12];
  auto rt = std::to_chars(t, t + sizeof t, tier);
  std::string_view sv = "error";
  if (status != 0) {
    auto rs = std::to_chars(s, s + sizeof s, status);
    sv = std::string_view(s, static_cast<std::size_t>(rs.ptr - s));
  }
  return requests.labels({agent, std::string_view(t, static_cast<std::size_t>(rt.ptr - t)), sv});
}

Counter& KscribeMetrics::proxyRefusal(unsigned status) {
  char s[12];
  auto rs = std::to_chars(s, s + sizeof s, status);
  return proxy_refusals.labels({std::string_view(s, static_cast<std::size_t>(rs.ptr - s))});
}

Registry& registry() {
  static Registry r;
  return r;
}

KscribeMetrics& get() {
  static KscribeMetrics m(registry());
  return m;
}

void exportBpfCounters(KscribeMetrics& m, std::function<std::vector<std::uint64_t>()> read) {
  if (!read) {
    m.bpf_drops.setSource({});
    m.bpf_events.setSource({});
    return;
  }
  auto shared = std::make_shared<std::function<std::vector<std::uint64_t>()>>(std::move(read));
  auto pick = [shared](bool drops) {
    return [shared, drops] {
      std::vector<Sample> out;
      auto c = (*shared)();
      for (unsigned i = 0; i < c.size() && i < KSCRIBE_CNT_MAX; ++i) {
        bool is_event =
            i == KSCRIBE_CNT_CONNECT || i == KSCRIBE_CNT_ACCEPT || i == KSCRIBE_CNT_JOINED;
        if (is_event == drops) continue;
        out.push_back({{bpf::counterName(i)}, static_cast<double>(c[i])});
      }
      return out;
    };
  };
  m.bpf_drops.setSource(pick(true));
  m.bpf_events.setSource(pick(false));
}

}  // namespace kscribe::metrics
