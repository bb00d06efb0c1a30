#pragma once
// Cached answers: the entry and its wire encoding (for Redis), the in-process L1 shared by the
// workers, and the single-flight table that makes one request per key and instance go to the
// origin while the others wait for it.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/result.hpp>

#include "proxy/cache/coherence.hpp"

namespace pitstop::cache {

// Wall-clock milliseconds: entries are shared through Redis by instances on different hosts.
std::int64_t now_ms();

struct Entry {
  std::string key;
  unsigned status = 200;
  std::string content_type = "application/json";
  // Header lines the origin's answer carries besides the type, formatted ("Name: value\r\n").
  std::string headers;
  std::string etag;  // quoted strong validator of the body
  std::string body;
  // The tags as rendered, needed to store the entry in Redis's tag sets; dropped before L1 keeps
  // the entry and absent from one read back from Redis: the hashes are all the indexes need.
  std::vector<std::string> tags;
  std::vector<std::uint64_t> tag_hashes;  // tag_hash() of each tag (hash_tags)
  std::int64_t stored_ms = 0;
  std::int64_t ttl_ms = 0;              // fresh until stored_ms + ttl_ms
  std::int64_t swr_ms = 0;              // then served while one refresh runs, this long
  std::int64_t sie_ms = 0;              // or served when the origin fails, this long

  std::int64_t expires_ms() const { return stored_ms + ttl_ms; }
  bool fresh(std::int64_t now) const { return now < expires_ms(); }
  // Remaining freshness in whole seconds, negative once stale (RFC 9211 ttl).
  std::int64_t ttl_left_s(std::int64_t now) const;
  // Past every window: no use to anyone.
  bool dead(std::int64_t now) const { return now >= expires_ms() + std::max(swr_ms, sie_ms); }
  std::size_t bytes() const;
};
using EntryPtr = std::shared_ptr<const Entry>;

// A tag's 64-bit hash, the key of the tag indexes (L1, the invalidation log) and what Redis
// entries carry; stable across builds. A collision only drops an extra entry.
std::uint64_t tag_hash(std::string_view tag);
// How many tags the entry carries (hashes, or strings not hashed yet).
std::size_t tag_count(const Entry& e);
// Fills e.tag_hashes from e.tags (decode() does; whoever builds an entry should).
void hash_tags(Entry& e);

// "\"<32 hex digits>\"": SHA-256 of the body, truncated.
std::string strong_etag(std::string_view body);

// Binary encoding for Redis: length-prefixed fields behind a magic and version. Decoding checks
// every length against the input, so a corrupt or foreign value is an error, never a crash.
std::string encode(const Entry& e);
boost::system::result<Entry> decode(std::string_view bytes);

// Does an If-None-Match field value match `etag`? (RFC 9110 weak comparison, lists, "*")
bool etag_matches(std::string_view if_none_match, std::string_view etag);

// The in-process cache: byte-bounded (one budget for all shards), LRU (sampled across shards),
// sharded so that workers rarely meet on a lock.
class L1 {
 public:
  explicit L1(std::size_t max_bytes, std::size_t shards = 64);
  ~L1();
  L1(const L1&) = delete;
  L1& operator=(const L1&) = delete;

  bool enabled() const { return max_bytes_ > 0; }
  // The entry, fresh or stale; entries past every window are dropped on the way.
  EntryPtr get(std::string_view key, std::int64_t now);
  void put(EntryPtr e);
  // Puts the entry only if `still_valid()` holds, checked under the shard's lock: an
  // invalidation recorded before the check refuses it, one after the check finds it in place.
  void put_if(EntryPtr e, const std::function<bool()>& still_valid);
  void erase(std::string_view key);
  // Drops every entry carrying `tag`; returns how many.
  std::size_t invalidate_tag(std::string_view tag);
  void clear();

  struct Stats {
    std::uint64_t hits = 0, misses = 0, inserts = 0, evictions = 0;
    std::size_t entries = 0, bytes = 0;
    std::size_t tag_refs = 0;  // ids in the tag index, those of removed entries not swept yet included
  };
  Stats stats() const;

 private:
  struct Shard;
  std::size_t shard_of(std::string_view key) const;
  void evict(std::size_t from, std::uint64_t keep);
  std::size_t max_bytes_;
  std::atomic<std::size_t> total_{0};
  std::atomic<std::size_t> hand_{0};
  std::vector<std::unique_ptr<Shard>> shards_;
};

// What one origin fetch produced, shared by every request that waited for it.
struct Outcome {
  EntryPtr entry;          // the answer: a 200 to cache, or an error answer (never cached)
  bool transient = false;  // the origin failed or timed out: a stale answer may stand in
  bool stored = false;     // the answer went into the cache
  bool redis_down = false; // Redis could not be written
  Began began;             // when the fetch (or the lookup that found the answer) began
};
using OutcomePtr = std::shared_ptr<const Outcome>;

// One origin fetch per key and instance. The first request for a key leads; the others follow
// and receive the leader's outcome on their own executor.
class Flights {
 public:
  struct Flight;
  struct Ticket {
    std::shared_ptr<Flight> flight;
    bool leader = false;
  };

  Ticket join(const std::string& key);
  // The leader's outcome; wakes every follower. Must be called exactly once per leader ticket.
  void finish(const std::string& key, const std::shared_ptr<Flight>& flight, OutcomePtr outcome);
  // A follower's wait; nullptr when `deadline` passed first.
  boost::asio::awaitable<OutcomePtr> wait(std::shared_ptr<Flight> flight, std::chrono::steady_clock::time_point deadline);
  std::size_t in_flight() const;
  // How many requests wait behind the current fetch of `key`.
  std::size_t waiting(const std::string& key);

 private:
  struct Shard {
    mutable std::mutex m;
    std::unordered_map<std::string, std::shared_ptr<Flight>> flights;
  };
  Shard& shard_for(std::string_view key);
  Shard shards_[16];
};

}  // namespace pitstop::cache
