#pragma once
// Read-through: L1 -> Redis -> one origin fetch per key (single-flight), stale-while-revalidate
// and stale-if-error where the category allows them. Everything it talks to is passed in (the
// caches, the flights, the invalidation log, the trust state, a clock and the request's source),
// so that every interleaving can be played in a test. How an answer was served is one type,
// `Served`, from which Cache-Status is formatted in one place.
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include "proxy/cache/cache.hpp"
#include "proxy/cache/coherence.hpp"

namespace pitstop::cache {

// How one answer was served.
enum class Served : std::uint8_t {
  l1_hit,                  // fresh, from this instance's memory
  redis_hit,               // fresh, from Redis
  stale_while_revalidate,  // expired but within its window; one refresh runs behind it
  collapsed,               // waited for another request's origin fetch of the same key
  stored,                  // fetched from the origin and cached
  fetched,                 // fetched from the origin, not cached (a write overtook it, too many tags, a variant name)
  stale_if_error,          // the origin failed or did not answer in time; an expired answer stood in
  origin_error,            // the origin's error answer, never cached
  timeout,                 // waited for another request's fetch past the origin timeout
  refused,                 // refused before the cache (parameters, credentials, limits, roles)
  bypass,                  // caching is off
  write,                   // a write, passed to the origin
};
std::string_view name(Served s);

struct Answer {
  EntryPtr entry;            // what to send; nullptr when refused or timed out without a stale answer
  Served served = Served::fetched;
  bool had_stale = false;    // an expired answer was there (fwd=stale rather than fwd=uri-miss)
  bool redis_down = false;   // Redis could not be used for this answer
  unsigned fwd_status = 0;   // the origin's status when it failed
  std::int64_t ttl_s = 0;    // freshness left (negative: stale) for hits and stale answers
};
// The RFC 9211 Cache-Status field value ("pitstop; hit; ttl=42; detail=l1").
std::string cache_status(const Answer& a);

// What the origin said: a 200 body with the tags it depends on, or an error answer.
struct Fetched {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string headers;  // lines kept with the body ("Name: value\r\n")
  std::string body;
  std::vector<std::string> tags;
  bool transient = false;  // a failure a stale answer may cover (timeout, database unreachable)
  // Named its rows otherwise than they are stored (origin::Answer::variant), or set a cookie of
  // its own: served, not kept.
  bool variant = false;
  bool no_store = false;
};

// Where a missed read is fetched from. It must own what it needs: a stale-while-revalidate
// refresh outlives the request that started it.
class Source {
 public:
  virtual ~Source() = default;
  virtual boost::asio::awaitable<Fetched> fetch() = 0;
};

// The shared tier (Redis, cache::Store).
class Remote {
 public:
  struct Lookup {
    EntryPtr entry;             // nullptr on a miss
    std::int64_t redis_ms = 0;  // Redis's clock at the lookup: a fill from here started after it
  };
  virtual ~Remote() = default;
  virtual boost::asio::awaitable<boost::system::result<Lookup>> get(const std::string& key) = 0;
  // Stores unless one of the entry's tags was invalidated at or after `since_ms` (Redis's clock);
  // false then.
  virtual boost::asio::awaitable<boost::system::result<bool>> put(const Entry& e, std::int64_t since_ms) = 0;
  // Deletes every entry of each tag and marks the tags invalidated; how many entries went.
  virtual boost::asio::awaitable<boost::system::result<std::int64_t>> invalidate(std::span<const std::string> tags) = 0;
};

// Wall-clock milliseconds for entries' freshness (entries travel between hosts through Redis).
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t wall_ms() const = 0;
};
const Clock& system_clock();

struct Lifetime {
  std::int64_t ttl_ms = 0;  // fresh this long
  std::int64_t swr_ms = 0;  // then served while one refresh runs, this long
  std::int64_t sie_ms = 0;  // or served when the origin fails, this long
};

struct Read {
  std::string key;
  Lifetime life;
  std::shared_ptr<Source> source;
};

struct ReadSettings {
  bool enabled = true;                                 // false: every read goes to the origin, nothing kept
  std::chrono::milliseconds follower_wait{10000};      // how long a collapsed request waits
  std::size_t max_tags = 10000;                        // an answer with more is served, not cached
};

// One per worker; the collaborators it is given outlive it.
class ReadThrough {
 public:
  ReadThrough(boost::asio::any_io_executor ex, L1& l1, Remote& l2, Flights& flights, InvalidationLog& log, Trust& trust,
              const Clock& clock, ReadSettings settings);

  boost::asio::awaitable<Answer> serve(Read read);

 private:
  struct Looked {
    EntryPtr entry;  // fresh or stale, from L1 or Redis
    Served source = Served::l1_hit;
    bool redis_down = false;
    std::int64_t redis_ms = 0;
  };
  boost::asio::awaitable<Looked> look_up(const std::string& key, std::int64_t now, const Began& asked);
  boost::asio::awaitable<Answer> miss(Read read, Looked looked, Began arrived);
  // A fresh answer found by a new leader: another fetch finished while it looked in Redis.
  boost::asio::awaitable<EntryPtr> late_hit(const std::string& key, Served& source);
  // May a request that arrived as `arrived` take the answer of a fetch it waited for?
  bool may_take(const Outcome& o, const Began& arrived) const;
  // May an answer found or fetched as `b` enter L1 now?
  bool may_keep(const Began& b, const Entry& e) const;
  Answer settle(const Outcome& outcome, const Looked& looked, bool leader) const;
  // keep=false: answer only (the no-cache baseline), nothing stored.
  boost::asio::awaitable<OutcomePtr> fetch(const Read& read, std::int64_t redis_ms, bool keep);
  boost::asio::awaitable<void> refresh(Read read, std::int64_t redis_ms, std::shared_ptr<Flights::Flight> flight);
  Answer hit(EntryPtr e, Served how, std::int64_t now) const;

  boost::asio::any_io_executor ex_;
  L1& l1_;
  Remote& l2_;
  Flights& flights_;
  InvalidationLog& log_;
  Trust& trust_;
  const Clock& clock_;
  ReadSettings settings_;
};

}  // namespace pitstop::cache
