#pragma once
// Rate limits: GCRA (the generic cell rate algorithm) per identity × method class, decided by
// one Redis script on Redis's own clock so that every instance agrees; a per-instance limiter
// with the same quotas when Redis cannot be asked; and a per-worker shortcut that refuses a
// client already known to be over its limit without asking anyone.
#include <chrono>
#include <cstdint>
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
#include <boost/asio/ip/address.hpp>

#include "proxy/redis/client.hpp"

namespace pitstop::limits {

// A quota: `limit` requests per `window_s` seconds at a steady rate, plus `burst` more at once.
struct Policy {
  std::string name;  // the method class: get, post, put, delete
  std::int64_t limit = 1;
  std::int64_t window_s = 60;
  std::int64_t burst = 0;
  // GCRA's emission interval and tolerance, in microseconds.
  std::int64_t interval_us() const { return std::max<std::int64_t>(1, window_s * 1'000'000 / std::max<std::int64_t>(1, limit)); }
  std::int64_t tolerance_us() const { return burst * interval_us(); }
};

struct Decision {
  bool allowed = true;
  std::int64_t remaining = 0;     // requests admitted right now, back to back
  std::int64_t reset_s = 0;       // seconds until the quota is whole again
  std::int64_t retry_after_s = 0; // refused: seconds until the next request is admitted
  std::int64_t retry_after_us = 0;
  enum class Source { redis, lease, local, shortcut, closed } source = Source::redis;
};

// The IETF RateLimit fields: RateLimit-Policy: "get";q=200;w=60 and RateLimit: "get";r=17;t=12
// (t: seconds until the quota is whole again; on a refusal, until the next request fits).
std::string policy_field(const Policy& p);
std::string limit_field(const Policy& p, const Decision& d);

// GCRA on a local clock, for when Redis cannot be asked. Shared by the workers of an instance.
class LocalLimiter {
 public:
  Decision decide(const std::string& key, const Policy& p, std::int64_t now_us);
  // What decide() would say, without spending anything.
  Decision peek(const std::string& key, const Policy& p, std::int64_t now_us);

 private:
  std::mutex m_;
  std::unordered_map<std::string, std::int64_t> tat_;  // theoretical arrival times
  std::int64_t pruned_us_ = 0;
};

// Trusted proxies: the client address is the socket peer, unless the peer is one of these; then
// it is the right-most X-Forwarded-For entry that is not.
class TrustedProxies {
 public:
  // "10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8"; false with a reason for a bad entry.
  bool add(std::string_view cidr, std::string& why);
  bool trusted(const boost::asio::ip::address& a) const;
  std::string client(const boost::asio::ip::address& peer, std::string_view x_forwarded_for) const;
  bool empty() const { return v4_.empty() && v6_.empty(); }

 private:
  std::vector<std::pair<std::uint32_t, unsigned>> v4_;                     // network, prefix
  std::vector<std::pair<std::array<unsigned char, 16>, unsigned>> v6_;
};

struct Settings {
  std::string site;
  bool fail_closed = false;   // Redis unreachable: refuse (503) instead of limiting locally
  bool shortcut = true;       // refuse known over-limit clients without a Redis round trip
};

// One per worker.
class Limiter {
 public:
  Limiter(redis::Client& queue, LocalLimiter& local, Settings settings);

  // `bucket` names the identity (user:… or ip:…) and, for rules with their own quota, the rule.
  boost::asio::awaitable<Decision> check(const std::string& bucket, const Policy& policy);

  struct Stats {
    std::uint64_t redis = 0, leased = 0, local = 0, shortcut = 0, refused = 0;
    std::uint64_t prefetches = 0;  // grants asked for ahead, in the background
  };
  const Stats& stats() const { return stats_; }
  // What decided the last request: "shared" (Redis), "local" or "closed".
  const char* mode() const { return mode_; }

 private:
  // Tokens granted by Redis ahead of use, per bucket (see check()).
  static constexpr std::int64_t kMaxLease = 64;
  static constexpr std::chrono::seconds kLeaseLife{1};
  struct Lease {
    std::int64_t tokens = 0;      // granted, not used yet; lapse at `expires`
    std::int64_t remaining = 0;   // Redis's remaining after the last grant
    std::int64_t backlog_us = 0;  // and its backlog
    std::chrono::steady_clock::time_point granted, expires;
    std::int64_t want = 1;        // size of the next grant
    std::int64_t seen = 0, rate = 0;  // requests since window_start; the last window's, per second
    std::chrono::steady_clock::time_point window_start;
    bool fetching = false;  // a lease is being asked for; requests without a token wait on `wake`
    std::shared_ptr<boost::asio::steady_timer> wake;
    std::int64_t next_want(std::chrono::steady_clock::time_point now, std::int64_t redis_remaining);
  };
  boost::asio::awaitable<Decision> ask(const std::string& key, const Policy& policy, std::chrono::steady_clock::time_point now);
  boost::asio::awaitable<void> prefetch(std::string key, Policy policy);
  boost::asio::awaitable<std::optional<redis::Reply>> eval(const std::string& key, const Policy& policy, std::int64_t want,
                                                           std::int64_t held, int use);
  void prune(std::chrono::steady_clock::time_point now);
  void begin_fetch(Lease& l, const boost::asio::any_io_executor& ex);
  void end_fetch(const std::string& key);

  redis::Client& queue_;
  LocalLimiter& local_;
  Settings settings_;
  std::unordered_map<std::string, Lease> leases_;
  std::string id_;  // this worker's, in Redis's record of held tokens
  std::chrono::steady_clock::time_point leases_pruned_{};
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> refused_until_;
  std::chrono::steady_clock::time_point pruned_{};
  Stats stats_;
  const char* mode_ = "shared";
};

}  // namespace pitstop::limits
