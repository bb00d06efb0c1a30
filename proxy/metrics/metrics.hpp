#pragma once
// What pitstop counts. Each worker writes its own `Sink`, on its own thread: no atomics and no
// locks on the hot path. A scrape asks every worker (on its thread) to copy its numbers into a
// `Sample`, sums the samples, and formats them: the Prometheus text format (prometheus-cpp's
// serializer) or the dashboard's JSON. Labels are bounded: rule names, method classes, status
// codes, outcomes; never a user, a key or a raw path.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace pitstop::metrics {

// Upper bounds of the latency buckets, in seconds: 50 µs to 10 s.
inline constexpr std::array<double, 17> kBounds{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};

struct Histogram {
  std::array<std::uint64_t, kBounds.size() + 1> counts{};  // per bucket, not cumulative; the last is above 10 s
  std::uint64_t count = 0;
  double sum = 0;
  void observe(double seconds);
  void merge(const Histogram& other);
  // The q-quantile estimated from the buckets (linear within one), as Prometheus'
  // histogram_quantile does; 0 when empty.
  double quantile(double q) const;
};

enum class Type { counter, gauge, histogram };

// Label pairs, in order.
using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// Numbers of the whole process, by family and label set.
struct Sample {
  struct Family {
    Type type = Type::counter;
    std::string help;
    std::map<std::string, double> values;         // encoded labels -> value (counters, gauges)
    std::map<std::string, Histogram> histograms;  // encoded labels -> histogram
  };
  std::map<std::string, Family, std::less<>> families;

  // Adds to the series (counters and gauges sum across workers).
  void add(std::string_view family, Type type, std::string_view help, Labels labels, double value);
  void add(std::string_view family, std::string_view help, Labels labels, const Histogram& h);
  // Adds a series whose labels are already encoded (encode_labels).
  void add_encoded(std::string_view family, Type type, std::string_view help, const std::string& labels, double value);
  void add_encoded(std::string_view family, std::string_view help, const std::string& labels, const Histogram& h);
  void merge(const Sample& other);

  // The value of one series (0 when absent), and the sum over a family's series matching the
  // given labels (a subset).
  double value(std::string_view family, Labels labels = {}) const;
  const Histogram* histogram(std::string_view family, Labels labels = {}) const;

  // The Prometheus text exposition format (version 0.0.4).
  std::string text() const;
};

std::string encode_labels(Labels labels);

// One worker's counters and histograms. Keys are label values joined by '\x1f', built in a
// reused buffer: a request costs a few hash lookups, no allocation once its series exist.
class Sink {
 public:
  // A request answered: its rule ("" for none), method class, status; how long it took; and
  // which path it took (read, write, relay, health, refused).
  void request(std::string_view rule, std::string_view method_class, unsigned status, std::string_view path, double seconds);
  // How a read was served (cache::name of its Served), by rule and category.
  void served(std::string_view rule, std::string_view category, std::string_view outcome);
  // An origin fetch of this kind (sql, resource, http, …) took this long.
  void origin(std::string_view kind, double seconds);
  // A rate-limit decision: by class, where it was decided and whether it allowed the request.
  void limit(std::string_view method_class, std::string_view where, bool allowed);

  // Observed directly by what measures them (the clients, the subscriber, the barrier).
  Histogram redis_cache;
  Histogram redis_queue;
  Histogram mariadb;
  Histogram invalidation_lag;  // an event's commit (its timestamp) -> this instance's L1 dropped
  Histogram write_barrier;     // a write's commit -> every instance acknowledged (or fenced)

  // Adds this worker's numbers to `out`.
  void into(Sample& out) const;

 private:
  std::string& key(std::initializer_list<std::string_view> parts);
  std::unordered_map<std::string, std::uint64_t> requests_;
  std::unordered_map<std::string, Histogram> durations_;
  std::unordered_map<std::string, std::uint64_t> served_;
  std::unordered_map<std::string, Histogram> origin_;
  std::unordered_map<std::string, std::uint64_t> limits_;
  std::string key_;
};

}  // namespace pitstop::metrics
