// Latency histogram with log-linear buckets, as HdrHistogram lays them out: values below 128 are
// exact, above that every power of two is split into 128 equal buckets, so a bucket is never
// wider than 1/128 (0.8 %) of its lower bound. Fixed size (about 60 KB), O(1) record, merged by
// adding counts. Values are nanoseconds.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace pitstop::load {

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr std::uint64_t kSub = std::uint64_t{1} << kSubBits;
  // Exponents kSubBits..63 each get kSub buckets, on top of the kSub exact ones.
  static constexpr std::size_t kBuckets = kSub + (64 - kSubBits) * kSub;

  void record(std::uint64_t v) {
    ++counts_[index(v)];
    ++total_;
    sum_ += static_cast<double>(v);
    max_ = std::max(max_, v);
    min_ = std::min(min_, v);
  }

  void merge(const Histogram& o) {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
    min_ = std::min(min_, o.min_);
  }

  std::uint64_t count() const { return total_; }
  std::uint64_t max() const { return total_ ? max_ : 0; }
  std::uint64_t min() const { return total_ ? min_ : 0; }
  double mean() const { return total_ ? sum_ / static_cast<double>(total_) : 0.0; }

  // The value at or below which a fraction q of the recorded values lie: the upper end of the
  // bucket holding that rank (never above the largest value seen), as HdrHistogram reports it.
  std::uint64_t percentile(double q) const {
    if (total_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(upper(i), max_);
    }
    return max_;
  }

  static std::size_t index(std::uint64_t v) {
    if (v < kSub) return static_cast<std::size_t>(v);
    const int e = std::bit_width(v) - 1;  // >= kSubBits
    const int shift = e - kSubBits;
    return static_cast<std::size_t>(kSub + static_cast<std::uint64_t>(shift) * kSub + ((v >> shift) - kSub));
  }

  // Largest value that falls into bucket i.
  static std::uint64_t upper(std::size_t i) {
    if (i < kSub) return i;
    const std::uint64_t shift = (i - kSub) / kSub;
    const std::uint64_t sub = (i - kSub) % kSub + kSub;
    const std::uint64_t lo = sub << shift;
    const std::uint64_t width = std::uint64_t{1} << shift;
    return lo + (width - 1);
  }

 private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t total_ = 0;
  double sum_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = std::numeric_limits<std::uint64_t>::max();
};

}  // namespace pitstop::load
