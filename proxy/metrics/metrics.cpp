#include "proxy/metrics/metrics.hpp"

#include <algorithm>
#include <limits>
#include <sstream>
#include <vector>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

namespace pitstop::metrics {

namespace {

constexpr char kPair = '\x1e';   // between a label's name and its value
constexpr char kLabel = '\x1f';  // between labels (and between a Sink key's values)

using Decoded = std::vector<std::pair<std::string_view, std::string_view>>;

Decoded decode(std::string_view encoded) {
  Decoded out;
  while (!encoded.empty()) {
    const auto end = encoded.find(kLabel);
    const std::string_view one = encoded.substr(0, end);
    const auto mid = one.find(kPair);
    out.emplace_back(one.substr(0, mid), mid == std::string_view::npos ? std::string_view() : one.substr(mid + 1));
    if (end == std::string_view::npos) break;
    encoded.remove_prefix(end + 1);
  }
  return out;
}

bool matches(std::string_view encoded, Labels wanted) {
  if (wanted.size() == 0) return true;
  const Decoded have = decode(encoded);
  for (const auto& [name, value] : wanted) {
    const auto it = std::find_if(have.begin(), have.end(), [&](const auto& p) { return p.first == name; });
    if (it == have.end() || it->second != value) return false;
  }
  return true;
}

// A Sink key's values, in the order they were joined.
std::vector<std::string_view> split(std::string_view key) {
  std::vector<std::string_view> out;
  while (true) {
    const auto end = key.find(kLabel);
    out.push_back(key.substr(0, end));
    if (end == std::string_view::npos) return out;
    key.remove_prefix(end + 1);
  }
}

Sample::Family& family_of(Sample& s, std::string_view name, Type type, std::string_view help) {
  auto it = s.families.find(name);
  if (it == s.families.end()) {
    it = s.families.emplace(std::string(name), Sample::Family{}).first;
    it->second.type = type;
    it->second.help = std::string(help);
  }
  return it->second;
}

std::string encode_values(std::initializer_list<std::string_view> names, const std::vector<std::string_view>& values) {
  std::string out;
  std::size_t i = 0;
  for (const auto name : names) {
    if (!out.empty()) out += kLabel;
    out.append(name);
    out += kPair;
    if (i < values.size()) out.append(values[i]);
    ++i;
  }
  return out;
}

}  // namespace

void Histogram::observe(double seconds) {
  const auto it = std::lower_bound(kBounds.begin(), kBounds.end(), seconds);
  ++counts[static_cast<std::size_t>(it - kBounds.begin())];
  ++count;
  sum += seconds;
}

void Histogram::merge(const Histogram& o) {
  for (std::size_t i = 0; i < counts.size(); ++i) counts[i] += o.counts[i];
  count += o.count;
  sum += o.sum;
}

double Histogram::quantile(double q) const {
  if (count == 0) return 0;
  const double rank = q * static_cast<double>(count);
  std::uint64_t below = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (static_cast<double>(below + counts[i]) >= rank && counts[i] > 0) {
      if (i == kBounds.size()) return kBounds.back();  // above the last bound: say the bound
      const double lo = i == 0 ? 0 : kBounds[i - 1];
      const double hi = kBounds[i];
      return lo + (hi - lo) * (rank - static_cast<double>(below)) / static_cast<double>(counts[i]);
    }
    below += counts[i];
  }
  return kBounds.back();
}

std::string encode_labels(Labels labels) {
  std::string out;
  for (const auto& [name, value] : labels) {
    if (!out.empty()) out += kLabel;
    out.append(name);
    out += kPair;
    out.append(value);
  }
  return out;
}

void Sample::add(std::string_view family, Type type, std::string_view help, Labels labels, double value) {
  add_encoded(family, type, help, encode_labels(labels), value);
}

void Sample::add(std::string_view family, std::string_view help, Labels labels, const Histogram& h) {
  add_encoded(family, help, encode_labels(labels), h);
}

void Sample::add_encoded(std::string_view family, Type type, std::string_view help, const std::string& labels, double value) {
  family_of(*this, family, type, help).values[labels] += value;
}

void Sample::add_encoded(std::string_view family, std::string_view help, const std::string& labels, const Histogram& h) {
  family_of(*this, family, Type::histogram, help).histograms[labels].merge(h);
}

void Sample::merge(const Sample& other) {
  for (const auto& [name, f] : other.families) {
    Family& mine = family_of(*this, name, f.type, f.help);
    for (const auto& [labels, v] : f.values) mine.values[labels] += v;
    for (const auto& [labels, h] : f.histograms) mine.histograms[labels].merge(h);
  }
}

double Sample::value(std::string_view family, Labels labels) const {
  const auto it = families.find(family);
  if (it == families.end()) return 0;
  double total = 0;
  for (const auto& [encoded, v] : it->second.values)
    if (matches(encoded, labels)) total += v;
  return total;
}

const Histogram* Sample::histogram(std::string_view family, Labels labels) const {
  const auto it = families.find(family);
  if (it == families.end()) return nullptr;
  for (const auto& [encoded, h] : it->second.histograms)
    if (matches(encoded, labels)) return &h;
  return nullptr;
}

std::string Sample::text() const {
  std::vector<prometheus::MetricFamily> out;
  out.reserve(families.size());
  for (const auto& [name, f] : families) {
    prometheus::MetricFamily pf;
    pf.name = name;
    pf.help = f.help;
    pf.type = f.type == Type::counter ? prometheus::MetricType::Counter
              : f.type == Type::gauge ? prometheus::MetricType::Gauge
                                      : prometheus::MetricType::Histogram;
    auto labelled = [](const std::string& encoded) {
      prometheus::ClientMetric m;
      for (const auto& [n, v] : decode(encoded)) m.label.push_back({std::string(n), std::string(v)});
      return m;
    };
    for (const auto& [encoded, v] : f.values) {
      auto m = labelled(encoded);
      if (f.type == Type::counter) m.counter.value = v;
      else m.gauge.value = v;
      pf.metric.push_back(std::move(m));
    }
    for (const auto& [encoded, h] : f.histograms) {
      auto m = labelled(encoded);
      m.histogram.sample_count = h.count;
      m.histogram.sample_sum = h.sum;
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < h.counts.size(); ++i) {
        cumulative += h.counts[i];
        const double bound = i < kBounds.size() ? kBounds[i] : std::numeric_limits<double>::infinity();
        m.histogram.bucket.push_back({cumulative, bound});
      }
      pf.metric.push_back(std::move(m));
    }
    out.push_back(std::move(pf));
  }
  std::ostringstream os;
  prometheus::TextSerializer().Serialize(os, out);
  return os.str();
}

std::string& Sink::key(std::initializer_list<std::string_view> parts) {
  key_.clear();
  bool first = true;
  for (const auto p : parts) {
    if (!first) key_ += kLabel;
    first = false;
    key_.append(p);
  }
  return key_;
}

void Sink::request(std::string_view rule, std::string_view method_class, unsigned status, std::string_view path, double seconds) {
  char code[4] = {static_cast<char>('0' + status / 100 % 10), static_cast<char>('0' + status / 10 % 10),
                  static_cast<char>('0' + status % 10), 0};
  auto& k = key({rule, method_class, std::string_view(code, 3)});
  if (auto it = requests_.find(k); it != requests_.end()) ++it->second;
  else requests_.emplace(k, 1);
  auto& d = key({path});
  if (auto it = durations_.find(d); it != durations_.end()) it->second.observe(seconds);
  else durations_[d].observe(seconds);
}

void Sink::served(std::string_view rule, std::string_view category, std::string_view outcome) {
  auto& k = key({rule, category, outcome});
  if (auto it = served_.find(k); it != served_.end()) ++it->second;
  else served_.emplace(k, 1);
}

void Sink::origin(std::string_view kind, double seconds) {
  auto& k = key({kind});
  if (auto it = origin_.find(k); it != origin_.end()) it->second.observe(seconds);
  else origin_[k].observe(seconds);
}

void Sink::limit(std::string_view method_class, std::string_view where, bool allowed) {
  auto& k = key({method_class, where, allowed ? "allowed" : "refused"});
  if (auto it = limits_.find(k); it != limits_.end()) ++it->second;
  else limits_.emplace(k, 1);
}

void Sink::into(Sample& out) const {
  for (const auto& [k, n] : requests_)
    out.add_encoded("pitstop_requests_total", Type::counter, "Requests answered, by rule (\"\" for none, -relay for those relayed to the ERP, -health for the probes), method class and status",
                    encode_values({"rule", "method", "status"}, split(k)), static_cast<double>(n));
  for (const auto& [k, h] : durations_)
    out.add_encoded("pitstop_request_duration_seconds",
                    "Time from a request's head to its answer, by path (read, write, relay, health, other)",
                    encode_values({"path"}, split(k)), h);
  for (const auto& [k, n] : served_)
    out.add_encoded("pitstop_cache_outcomes_total", Type::counter, "How reads were served, by rule, cache category and outcome",
                    encode_values({"rule", "category", "outcome"}, split(k)), static_cast<double>(n));
  for (const auto& [k, h] : origin_)
    out.add_encoded("pitstop_origin_fetch_duration_seconds", "Origin fetches (cache misses and refreshes), by origin kind",
                    encode_values({"origin"}, split(k)), h);
  for (const auto& [k, n] : limits_)
    out.add_encoded("pitstop_ratelimit_decisions_total", Type::counter,
                    "Rate-limit decisions by method class, where they were decided (redis, lease, local, shortcut, closed) and result",
                    encode_values({"method", "decided_by", "result"}, split(k)), static_cast<double>(n));
  out.add("pitstop_redis_command_duration_seconds", "Redis round trips (a pipeline counts once), by instance", {{"redis", "cache"}},
          redis_cache);
  out.add("pitstop_redis_command_duration_seconds", "Redis round trips (a pipeline counts once), by instance", {{"redis", "queue"}},
          redis_queue);
  out.add("pitstop_mariadb_query_duration_seconds", "MariaDB statements", {}, mariadb);
  out.add("pitstop_invalidation_lag_seconds",
          "From an invalidation event's commit (its timestamp) to this instance's L1 entries of its tags dropped", {}, invalidation_lag);
  out.add("pitstop_write_barrier_seconds",
          "From a write's commit to every live instance having dropped its entries (or been fenced): the wait a write's answer adds",
          {}, write_barrier);
}

}  // namespace pitstop::metrics
