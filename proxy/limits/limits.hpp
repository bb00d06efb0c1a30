#pragma once
// Rate limits: GCRA (the generic cell rate algorithm) per identity × method class, decided by
// one Redis script on Redis's own clock so that every instance agrees; a per-instance limiter
// with the same quotas when Redis cannot be asked; and a per-worker shortcut that refuses a
// client already known to be over its limit without asking anyone.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
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
  enum class Source { redis, local, shortcut, closed } source = Source::redis;
};

// The IETF RateLimit fields: RateLimit-Policy: "get";q=200;w=60 and RateLimit: "get";r=17;t=12
// (t: seconds until the quota is whole again; on a refusal, until the next request fits).
std::string policy_field(const Policy& p);
std::string limit_field(const Policy& p, const Decision& d);

// GCRA on a local clock, for when Redis cannot be asked. Shared by the workers of an instance.
class LocalLimiter {
 public:
  Decision decide(const std::string& key, const Policy& p, std::int64_t now_us);

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
    std::uint64_t redis = 0, local = 0, shortcut = 0, refused = 0;
  };
  const Stats& stats() const { return stats_; }
  // What decided the last request: "shared" (Redis), "local" or "closed".
  const char* mode() const { return mode_; }

 private:
  redis::Client& queue_;
  LocalLimiter& local_;
  Settings settings_;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> refused_until_;
  std::chrono::steady_clock::time_point pruned_{};
  Stats stats_;
  const char* mode_ = "shared";
};

}  // namespace pitstop::limits
