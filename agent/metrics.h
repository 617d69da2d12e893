#pragma once
// Prometheus metrics: a small thread-safe registry of counters, gauges and fixed-bucket histograms
// with label sets, rendered in the text exposition format 0.0.4, and the kscribe metrics defined
// up front with stable names (metrics::get()).
//
// Hot path: look a labelled child up once and keep the reference (children live as long as the
// registry); inc()/observe() are relaxed atomics and never allocate. A lookup by label values
// hashes string_views under a shared lock and allocates only the first time a series appears.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kscribe::metrics {

/// A monotonically increasing count.
class Counter {
 public:
  void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

/// A value that goes up and down (integral: every kscribe gauge counts something).
class Gauge {
 public:
  void set(std::int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void add(std::int64_t d) { value_.fetch_add(d, std::memory_order_relaxed); }
  void inc() { add(1); }
  void dec() { add(-1); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

/// Observations counted into fixed buckets (upper bounds, ascending), plus their sum.
class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds);
  void observe(double value);

  struct Snapshot {
    std::vector<std::uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0;
    std::uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  std::span<const double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // per bucket, the last is +Inf
  std::atomic<double> sum_{0};
};

enum class Type { kCounter, kGauge, kHistogram };

/// One metric name with its HELP, TYPE and label names.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, Type type, std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return name_; }
  const std::vector<std::string>& labelNames() const { return label_names_; }
  Type type() const { return type_; }
  /// Appends HELP, TYPE and every sample of this family.
  void render(std::string& out) const;

 protected:
  virtual void renderSamples(std::string& out) const = 0;
  std::string name_;
  std::string help_;
  Type type_;
  std::vector<std::string> label_names_;
};

/// Series beyond this many in one family share one child whose labels are all "_overflow": a
/// label value from the network must not grow memory without bound.
inline constexpr std::size_t kMaxSeriesPerFamily = 2000;

/// A family of metrics of one kind (Counter, Gauge, Histogram), one child per label-value set.
template <typename M>
class Family : public FamilyBase {
 public:
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds = {});

  /// The child for these label values (in label-name order), created on first use. The reference
  /// stays valid for the registry's lifetime: cache it on hot paths. Throws std::logic_error when
  /// the number of values differs from the number of label names (a programming error).
  M& labels(std::span<const std::string_view> values);
  M& labels(std::initializer_list<std::string_view> values) {
    return labels(std::span<const std::string_view>(values.begin(), values.size()));
  }
  /// The only child of an unlabelled family.
  M& get() { return labels(std::span<const std::string_view>{}); }
  std::size_t seriesCount() const;

 private:
  struct Child {
    std::vector<std::string> values;
    std::unique_ptr<M> metric;
  };
  void renderSamples(std::string& out) const override;
  std::unique_ptr<M> make() const;

  std::vector<double> bounds_;  // histograms only
  mutable std::shared_mutex mu_;
  std::unordered_multimap<std::uint64_t, Child*> index_;
  std::vector<std::unique_ptr<Child>> children_;
  Child* overflow_ = nullptr;
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

/// One sample a collector reports at scrape time.
struct Sample {
  std::vector<std::string> label_values;
  double value = 0;
};

/// A counter or gauge family whose values are read at scrape time (e.g. BPF per-CPU counters).
class CallbackFamily : public FamilyBase {
 public:
  using Source = std::function<std::vector<Sample>()>;
  CallbackFamily(std::string name, std::string help, Type type,
                 std::vector<std::string> label_names);
  /// Replaces the source (an empty function: no samples). It is called on the scrape thread, so
  /// it must be thread-safe and quick; clear it before what it reads goes away.
  void setSource(Source source);
  /// For an unlabelled family: the value `read` returns at each scrape (empty: no sample).
  void setValue(std::function<double()> read);

 private:
  void renderSamples(std::string& out) const override;
  mutable std::mutex mu_;
  Source source_;
};

/// Owns families and renders them, in registration order.
class Registry {
 public:
  Family<Counter>& counter(std::string name, std::string help,
                           std::vector<std::string> label_names = {});
  Family<Gauge>& gauge(std::string name, std::string help,
                       std::vector<std::string> label_names = {});
  Family<Histogram>& histogram(std::string name, std::string help,
                               std::vector<std::string> label_names, std::vector<double> bounds);
  CallbackFamily& callback(std::string name, std::string help, Type type,
                           std::vector<std::string> label_names = {});
  /// The text exposition format, version 0.0.4.
  std::string render() const;

 private:
  template <typename F>
  F& add(std::unique_ptr<F> family);
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
};

/// The Content-Type of render()'s output.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

/// Appends `v` escaped as a label value (backslash, double quote and newline escaped).
void escapeLabelValue(std::string& out, std::string_view v);
/// Appends a sample value: integers without a fraction, +Inf, -Inf, NaN, else shortest repr.
void formatValue(std::string& out, double v);

/// Request latency buckets in seconds: API calls take milliseconds, list/watch setup up to a
/// minute.
inline constexpr std::array<double, 14> kLatencyBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60};

/// The kscribe metrics, with the names dashboards rely on (do not rename).
struct KscribeMetrics {
  explicit KscribeMetrics(Registry& registry);

  // The proxy path (MetricsTap counts these from the tap; see agent/metrics_tap.h).
  Family<Counter>& requests;            // kscribe_requests_total{agent,tier,status}
  Family<Histogram>& request_duration;  // kscribe_request_duration_seconds{tier}
  Family<Counter>& proxied_bytes;       // kscribe_proxied_bytes_total{direction}
  Family<Counter>& proxy_refusals;      // kscribe_proxy_refusals_total{status}
  CallbackFamily& connections_open;     // kscribe_connections_open (the proxy's count, at scrape)
  // Identity (issue 6).
  Family<Counter>& identity_rejections;  // kscribe_identity_rejections_total{agent,reason}
  // Attribution.
  Family<Counter>& attribution;  // kscribe_attribution_total{result=hit|miss|unavailable}
  Counter& attribution_hit;
  Counter& attribution_miss;
  Counter& attribution_unavailable;
  CallbackFamily& bpf_drops;   // kscribe_bpf_drops_total{reason}
  CallbackFamily& bpf_events;  // kscribe_bpf_events_total{event}
  // The recorder and redactor.
  Counter& bytes_recorded;   // kscribe_bytes_recorded_total: bytes appended to session files
  Counter& redactions;       // kscribe_redactions_total: values or bodies redacted
  Counter& truncations;      // kscribe_truncations_total: bodies cut at max_body_size
  Gauge& sessions_open;      // kscribe_sessions_open
  Counter& sessions_closed;  // kscribe_sessions_closed_total
  Counter& record_failures;  // kscribe_record_failures_total: exchanges not recorded
  Counter&
      recorder_waits;  // kscribe_recorder_waits_total: requests held while the writer caught up
  // The shipper and spool.
  Family<Counter>& uploads;  // kscribe_uploads_total{result=success|failure}
  Counter& upload_success;
  Counter& upload_failure;
  Counter& upload_retries;  // kscribe_upload_retries_total
  Gauge& spool_bytes;       // kscribe_spool_bytes
  Gauge& spool_accepting;   // kscribe_spool_accepting: 0 while a full spool refuses requests

  /// requests{agent,tier,status} without allocating once the series exists.
  Counter& request(std::string_view agent, unsigned tier, unsigned status);
  Counter& identityRejection(std::string_view agent, std::string_view reason) {
    return identity_rejections.labels({agent, reason});
  }
  Counter& proxyRefusal(unsigned status);
};

/// The process-wide registry that /metrics serves.
Registry& registry();
/// The kscribe metrics in registry(). One line from anywhere: metrics::get().truncations.inc();
KscribeMetrics& get();

/// Exports the BPF per-CPU counters (indexed by enum kscribe_counter, summed over CPUs) as
/// kscribe_bpf_drops_total{reason} and kscribe_bpf_events_total{event}, read at each scrape.
/// Pass an empty function before the loader goes away.
void exportBpfCounters(KscribeMetrics& m, std::function<std::vector<std::uint64_t>()> read);

}  // namespace kscribe::metrics
