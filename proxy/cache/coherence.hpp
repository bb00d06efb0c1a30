#pragma once
// What the caches need to know to stay honest: which tags were invalidated since a fill began
// (InvalidationLog), and whether this instance may answer from L1 and from Redis at all (Trust).
// Both are shared by the workers of an instance; the invalidation module writes them, the read
// path only asks.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace pitstop::cache {

// Invalidations numbered in the order this instance recorded them. A fill notes the epoch when
// it begins and asks at the end whether any of its tags was invalidated after it: a counter, not a
// clock, so that no two events tie and tests need no time.
class InvalidationLog {
 public:
  using Epoch = std::uint64_t;

  // The epoch now: whatever is recorded from here on has a larger one.
  Epoch now() const { return epoch_.load(std::memory_order_acquire); }
  Epoch record(std::span<const std::string> tags);
  Epoch record_hashes(std::span<const std::uint64_t> tag_hashes);
  // Was any of these tags (cache::tag_hash of them) invalidated after `since`? Records are kept
  // for the last `capacity` tags; older questions are answered yes.
  bool invalidated_since(std::span<const std::uint64_t> tag_hashes, Epoch since) const;
  bool invalidated_since(std::span<const std::string> tags, Epoch since) const;

  explicit InvalidationLog(std::size_t capacity = std::size_t{1} << 17) : capacity_(capacity) {}

 private:
  void prune();  // under m_
  std::size_t capacity_;
  mutable std::mutex m_;
  std::atomic<Epoch> epoch_{0};
  Epoch floor_ = 0;  // records at or below it were pruned
  std::unordered_map<std::uint64_t, Epoch> last_;  // by cache::tag_hash
};

// May this instance answer from L1, from Redis? L1 only while it hears every invalidation event
// (another instance's write could otherwise leave an old answer here); Redis only once the outbox
// relay has delivered whatever an earlier failure may have left undelivered.
class Trust {
 public:
  bool l1_usable() const { return l1_live_.load(std::memory_order_acquire); }
  void set_l1_live(bool live) { l1_live_.store(live, std::memory_order_release); }

  bool l2_trusted() const { return l2_suspect_since_.load(std::memory_order_acquire) == 0; }
  // A Redis operation failed (or an invalidation may not have reached Redis): distrust it until
  // a relay pass that began after now has caught up.
  void l2_failed();
  // A relay pass that began at `started` left nothing undelivered.
  void relay_caught_up(std::chrono::steady_clock::time_point started);

 private:
  std::atomic<bool> l1_live_{false};
  // Steady clock, ns; 0 = trusted. Suspect from the start: a previous run may have died after a
  // commit and before its invalidation reached Redis.
  std::atomic<std::int64_t> l2_suspect_since_{1};
};

}  // namespace pitstop::cache
