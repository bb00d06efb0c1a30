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

// May this instance answer from L1, from Redis?
//
// L1 only while it has proven, recently, that it hears every invalidation event: a ping it sent
// through Redis came back on its subscription, behind every event published before it. The proof
// lasts `fence` from when that ping was sent (this host's monotonic clock); writers wait that long,
// and a little more, for an instance that does not acknowledge their event, and then count it as
// fenced. Each time trust begins again after it lapsed, a new generation starts: L1 is emptied
// and nothing that began in an earlier generation may enter it.
//
// Redis only once the outbox relay has delivered whatever a failure may have left undelivered.
class Trust {
 public:
  using Clock = std::chrono::steady_clock;

  bool l1_usable() const { return l1_usable(Clock::now()); }
  bool l1_usable(Clock::time_point now) const {
    return now.time_since_epoch().count() < proven_until_.load(std::memory_order_acquire);
  }
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // Starts a generation; call before emptying L1, then prove_until().
  std::uint64_t next_generation() { return generation_.fetch_add(1, std::memory_order_acq_rel) + 1; }
  void prove_until(Clock::time_point until) { proven_until_.store(until.time_since_epoch().count(), std::memory_order_release); }
  // The event feed is gone: no L1 from now on until proven again.
  void fence() { proven_until_.store(0, std::memory_order_release); }

  bool l2_trusted() const { return l2_suspect_since_.load(std::memory_order_acquire) == 0; }
  // A Redis operation failed (or an invalidation may not have reached Redis): distrust it until
  // a relay pass that began after now has caught up.
  void l2_failed();
  // A relay pass that began at `started` left nothing undelivered.
  void relay_caught_up(Clock::time_point started);

 private:
  std::atomic<std::int64_t> proven_until_{0};  // steady clock, ns
  std::atomic<std::uint64_t> generation_{0};
  // Steady clock, ns; 0 = trusted. Suspect from the start: a previous run may have died after a
  // commit and before its invalidation reached Redis.
  std::atomic<std::int64_t> l2_suspect_since_{1};
};

// What a fill or a lookup knew when it began: what it may do with its result depends on it.
struct Began {
  InvalidationLog::Epoch epoch = 0;
  std::uint64_t generation = 0;
  bool proven = false;  // L1 was usable: every invalidation since then reaches this instance
  std::chrono::steady_clock::time_point at{};
};
inline Began began(const InvalidationLog& log, const Trust& trust) {
  Began b;
  b.generation = trust.generation();
  b.at = std::chrono::steady_clock::now();
  b.proven = trust.l1_usable(b.at);
  b.epoch = log.now();
  return b;
}

}  // namespace pitstop::cache
